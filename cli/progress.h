// Load progress display for `kilnctl load`.
//
// On a terminal the renderer redraws one line in place ("\r" + line + erase-to-end) with
// the stage, a bar, bytes and tensors; elsewhere (pipes, CI logs) it prints one line per
// stage change so logs stay readable. Finish() ends the in-place line.
//
// Thread-safety: not thread-safe; one renderer per stream of events.
#pragma once

#include <ostream>
#include <string>

#include "kiln/v1/kiln.pb.h"

namespace kiln::cli {

// "loading weights" for STAGE_LOADING_WEIGHTS, etc.
std::string StageName(kiln::v1::LoadProgress::Stage stage);

// One display line of at most `width` columns (≥ 20), e.g.
// "loading weights [#######.......]  42% 1.2 GiB/2.9 GiB 120/291 tensors".
// Bytes and tensors appear only when their totals are known (> 0).
std::string FormatProgressLine(const kiln::v1::LoadProgress& progress, int width);

class ProgressRenderer {
 public:
  // `out` is not owned and must outlive the renderer.
  ProgressRenderer(std::ostream* out, bool is_tty, int width);

  void Update(const kiln::v1::LoadProgress& progress);
  // Ends the in-place line on a TTY (newline); no-op otherwise or when nothing was drawn.
  void Finish();

 private:
  std::ostream* const out_;
  const bool is_tty_;
  const int width_;
  bool drawn_ = false;
  bool have_stage_ = false;
  kiln::v1::LoadProgress::Stage last_stage_ = kiln::v1::LoadProgress::STAGE_UNSPECIFIED;
};

}  // namespace kiln::cli
