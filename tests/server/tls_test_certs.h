// Test certificates made by the openssl CLI (as tests/integration/tls_test.cc does): CAs and
// leaves signed by them, EC P-256, valid for 2 days. Files land in `dir` as <name>.crt/.key.
#pragma once

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace kiln::server::testing {

class TestCerts {
 public:
  explicit TestCerts(std::string dir) : dir_(std::move(dir)) {}

  void MakeCa(const std::string& name) {
    Run("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " +
        Path(name + ".key") + " -out " + Path(name + ".crt") + " -days 2 -subj /CN=" + name +
        " -addext basicConstraints=critical,CA:TRUE");
  }
  void MakeLeaf(const std::string& name, const std::string& ca) {
    std::ofstream(Path(name + ".ext")) << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
    Run("req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " +
        Path(name + ".key") + " -out " + Path(name + ".csr") + " -subj /CN=" + name);
    Run("x509 -req -in " + Path(name + ".csr") + " -CA " + Path(ca + ".crt") + " -CAkey " +
        Path(ca + ".key") + " -set_serial " + std::to_string(++serial_) + " -days 2 -extfile " +
        Path(name + ".ext") + " -out " + Path(name + ".crt"));
  }
  // <name>.key encrypted with a passphrase.
  void MakeEncryptedKey(const std::string& name) {
    Run("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -aes256 -pass pass:secret "
        "-out " + Path(name + ".key"));
  }

  std::string Path(const std::string& file) const { return dir_ + "/" + file; }
  std::string Read(const std::string& file) const {
    std::ifstream in(Path(file));
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  void Write(const std::string& file, const std::string& text) const {
    std::ofstream(Path(file), std::ios::trunc) << text;
  }

 private:
  void Run(const std::string& args) {
    const std::string cmd = "/usr/bin/openssl " + args + " >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }

  std::string dir_;
  int serial_ = 100;
};

}  // namespace kiln::server::testing
