// Bit-exactness of kiln's bitsandbytes 4-bit quantizer against bitsandbytes 0.50 itself
// (tests/golden/fixtures/quant/blockwise.*, made by tools/fixtures/make_quant_fixtures.py):
// packed bytes, absmax, double-quant codes / nested absmax / offset, and dequantized values are
// compared for equality, not within a tolerance.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <span>
#include <vector>

#include "engine/io/json_util.h"
#include "engine/io/safetensors.h"
#include "engine/quant/bnb4.h"
#include "gtest/gtest.h"
#include "kernels/dtype.h"

namespace kiln::engine::quant {
namespace {

const std::string kDir = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/quant/";

class Fixture {
 public:
  explicit Fixture(const std::string& name = "blockwise.safetensors") {
    auto f = SafetensorsFile::Open(kDir + name, name);
    EXPECT_TRUE(f.ok()) << f.status();
    if (f.ok()) file_ = std::move(*f);
  }
  template <typename T>
  std::vector<T> Get(const std::string& key) const {
    if (!file_) return {};
    const TensorInfo* info = file_->Find(key);
    EXPECT_NE(info, nullptr) << key;
    if (info == nullptr) return {};
    std::vector<uint8_t> bytes(info->num_bytes());
    EXPECT_TRUE(file_->Read(*info, bytes).ok());
    std::vector<T> out(bytes.size() / sizeof(T));
    std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
    return out;
  }

 private:
  std::unique_ptr<SafetensorsFile> file_;
};

// bitsandbytes returns the dequantized weight in the source dtype (QuantState.dtype).
std::vector<float> RoundTo(std::vector<float> v, const std::string& dtype) {
  for (float& x : v) {
    if (dtype == "bfloat16") x = kernels::BFloat16ToFloat(kernels::FloatToBFloat16(x));
    if (dtype == "float16") x = kernels::HalfToFloat(kernels::FloatToHalf(x));
  }
  return v;
}

std::vector<uint32_t> Bits(const std::vector<float>& v) {
  std::vector<uint32_t> b(v.size());
  std::memcpy(b.data(), v.data(), v.size() * 4);
  return b;
}

// Bits with every NaN read as one canonical NaN: a NaN's sign/payload depends on which operand
// an instruction propagates, not on the algorithm (the non-finite sweep cases).
std::vector<uint32_t> BitsAnyNan(std::vector<float> v) {
  for (float& x : v) x = std::isnan(x) ? std::numeric_limits<float>::quiet_NaN() : x;
  return Bits(v);
}

// Bits with -0.0 read as +0.0: bitsandbytes' FP4 dequantization gives either sign for the
// zero of nibble 8 depending on its code path (scalar vs AVX-512), see bnb4.h.
std::vector<uint32_t> BitsZeroSignless(std::vector<float> v) {
  for (float& x : v) x = x == 0.0f ? 0.0f : x;
  return Bits(v);
}

TEST(Bnb4Test, CodeTablesMatchBitsandbytes) {
  Fixture fx;
  const auto nf4 = Code4bit(Bnb4Type::kNf4), fp4 = Code4bit(Bnb4Type::kFp4), dyn = DynamicMap();
  EXPECT_EQ(Bits(fx.Get<float>("code.nf4")), Bits(std::vector<float>(nf4.begin(), nf4.end())));
  EXPECT_EQ(Bits(fx.Get<float>("code.fp4")), Bits(std::vector<float>(fp4.begin(), fp4.end())));
  EXPECT_EQ(Bits(fx.Get<float>("code.dynamic")), Bits(std::vector<float>(dyn.begin(), dyn.end())));
}

TEST(Bnb4Test, QuantizeIsBitIdentical) {
  Fixture fx;
  auto meta = ReadJsonFile(kDir + "blockwise.json", "blockwise.json");
  ASSERT_TRUE(meta.ok()) << meta.status();
  int checked = 0;
  for (const auto& c : (*meta)["cases"]) {
    const std::string key = c["name"].get<std::string>();
    SCOPED_TRACE(key);
    const std::vector<float> w = fx.Get<float>(c["matrix"].get<std::string>() + ".w");
    const Bnb4Type type = c["quant_type"].get<std::string>() == "nf4" ? Bnb4Type::kNf4 : Bnb4Type::kFp4;
    auto q = Quantize4bit(w, type, c["blocksize"].get<int64_t>());
    ASSERT_TRUE(q.ok()) << q.status();
    EXPECT_EQ(q->packed, fx.Get<uint8_t>(key + ".packed"));
    std::vector<float> absmax = q->absmax;
    if (c["double_quant"].get<bool>()) {
      DoubleQuantized dq = DoubleQuantize(q->absmax);
      const float offset = c["offset"].get<float>();
      EXPECT_EQ(std::bit_cast<uint32_t>(dq.offset), std::bit_cast<uint32_t>(offset));
      EXPECT_EQ(Bits(dq.nested_absmax), Bits(fx.Get<float>(key + ".nested_absmax")));
      EXPECT_EQ(dq.codes, fx.Get<uint8_t>(key + ".absmax_codes"));
      absmax = DequantizeAbsmax(dq);
    }
    EXPECT_EQ(Bits(absmax), Bits(fx.Get<float>(key + ".absmax")));
    auto deq = Dequantize4bit(q->packed, absmax, type, c["blocksize"].get<int64_t>(),
                              static_cast<int64_t>(w.size()));
    ASSERT_TRUE(deq.ok());
    EXPECT_EQ(BitsZeroSignless(RoundTo(*deq, c["src_dtype"].get<std::string>())),
              BitsZeroSignless(fx.Get<float>(key + ".dequant")));
    ++checked;
  }
  EXPECT_EQ(checked, 24);
}

// Many absmax vectors (random, and ones sitting on the dynamic map's midpoints) double-quantized
// by bitsandbytes (dq_sweep.*, also an inf and a NaN absmax): every code, nested absmax, offset
// and reconstructed absmax is identical, including the ~300 values where bitsandbytes' 65536-point grid picks the code
// that is not the nearest one.
TEST(Bnb4Test, DoubleQuantizeSweepIsBitIdentical) {
  Fixture fx("dq_sweep.safetensors");
  auto meta = ReadJsonFile(kDir + "dq_sweep.json", "dq_sweep.json");
  ASSERT_TRUE(meta.ok()) << meta.status();
  const std::span<const float> dyn = DynamicMap();
  int checked = 0, not_nearest = 0;
  for (const auto& c : (*meta)["cases"]) {
    const std::string key = c["name"].get<std::string>();
    SCOPED_TRACE(key);
    const std::vector<float> absmax = fx.Get<float>(key + ".absmax");
    ASSERT_EQ(static_cast<int64_t>(absmax.size()), c["n"].get<int64_t>());
    const DoubleQuantized dq = DoubleQuantize(absmax);
    EXPECT_EQ(BitsAnyNan({dq.offset}), BitsAnyNan(fx.Get<float>(key + ".offset")));
    EXPECT_EQ(Bits(dq.nested_absmax), Bits(fx.Get<float>(key + ".nested_absmax")));
    const std::vector<uint8_t> ref = fx.Get<uint8_t>(key + ".codes");
    EXPECT_EQ(dq.codes, ref);
    EXPECT_EQ(BitsAnyNan(DequantizeAbsmax(dq)), BitsAnyNan(fx.Get<float>(key + ".dequant")));
    // Count the reference codes that are not the nearest map entry: the sweep must really
    // exercise the grid rule (a nearest-code quantizer fails on exactly these).
    for (size_t i = 0; i < ref.size() && i < dq.codes.size(); ++i) {
      const float x = (absmax[i] - dq.offset) / dq.nested_absmax[i / kNestedBlocksize];
      const float d = std::fabs(x - dyn[ref[i]]);
      if ((ref[i] > 0 && std::fabs(x - dyn[ref[i] - 1u]) < d) || (ref[i] < 255 && std::fabs(x - dyn[ref[i] + 1u]) < d)) {
        ++not_nearest;
      }
    }
    ++checked;
  }
  EXPECT_EQ(checked, 54);
  EXPECT_GT(not_nearest, 100);
}

TEST(Bnb4Test, RejectsBadBlocksizeAndSizes) {
  const std::vector<float> w(10, 1.0f);
  EXPECT_EQ(Quantize4bit(w, Bnb4Type::kNf4, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Quantize4bit(w, Bnb4Type::kNf4, 48).status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<uint8_t> packed(5);
  const std::vector<float> absmax(1);
  EXPECT_TRUE(Dequantize4bit(packed, absmax, Bnb4Type::kNf4, 64, 10).ok());
  EXPECT_FALSE(Dequantize4bit(packed, absmax, Bnb4Type::kNf4, 64, 12).ok());
  EXPECT_FALSE(Dequantize4bit(packed, absmax, Bnb4Type::kNf4, 0, 10).ok());
}

}  // namespace
}  // namespace kiln::engine::quant
