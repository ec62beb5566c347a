#include "cli/progress.h"

#include <algorithm>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kiln::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

kiln::v1::LoadProgress Progress(kiln::v1::LoadProgress::Stage stage, int64_t done, int64_t total,
                                int tensors_done = 0, int tensors_total = 0) {
  kiln::v1::LoadProgress p;
  p.set_stage(stage);
  p.set_bytes_done(done);
  p.set_bytes_total(total);
  p.set_tensors_done(tensors_done);
  p.set_tensors_total(tensors_total);
  return p;
}

TEST(FormatProgressLine, BarFillsTheWidth) {
  const std::string line =
      FormatProgressLine(Progress(kiln::v1::LoadProgress::STAGE_LOADING_WEIGHTS, 1024, 2048, 1, 2), 80);
  // 29 bar cells are what 80 columns leave; half of them are filled at 50%.
  EXPECT_EQ(line, "loading weights [" + std::string(14, '#') + std::string(15, '.') +
                      "]  50% 1.0 KiB/2.0 KiB 1/2 tensors");
  EXPECT_EQ(line.size(), 80u);
}

TEST(FormatProgressLine, MessageKeepsSomeRoomAndIsCutAtTheEdge) {
  kiln::v1::LoadProgress p =
      Progress(kiln::v1::LoadProgress::STAGE_LOADING_WEIGHTS, 1024, 2048, 1, 2);
  p.set_message("model.layers.0.self_attn.q_proj.weight");
  // 80 columns: 29 free for the bar, 16 of them kept for the message → a 13-cell bar.
  const std::string full = "loading weights [" + std::string(6, '#') + std::string(7, '.') +
                           "]  50% 1.0 KiB/2.0 KiB 1/2 tensors model.layers.0.self_attn.q_proj.weight";
  EXPECT_EQ(FormatProgressLine(p, 80), full.substr(0, 80));
  // Never split a UTF-8 character: "é" is two bytes straddling column 20.
  kiln::v1::LoadProgress u = Progress(kiln::v1::LoadProgress::STAGE_RESOLVING, 0, 0);
  u.set_message(std::string(9, 'a') + "\xc3\xa9");
  EXPECT_EQ(FormatProgressLine(u, 20), "resolving " + std::string(9, 'a'));
}

TEST(FormatProgressLine, NoTotalsNoBar) {
  kiln::v1::LoadProgress p = Progress(kiln::v1::LoadProgress::STAGE_RESOLVING, 0, 0);
  p.set_message("org/m");
  EXPECT_EQ(FormatProgressLine(p, 80), "resolving org/m");
  p.set_message("resolving org/m");  // a message that already names the stage
  EXPECT_EQ(FormatProgressLine(p, 80), "resolving org/m");
}

TEST(FormatProgressLine, ClampsAndTruncates) {
  // A server reporting more than the total never overflows the bar.
  const std::string full =
      FormatProgressLine(Progress(kiln::v1::LoadProgress::STAGE_LOADING_WEIGHTS, 5000, 2048), 60);
  EXPECT_THAT(full, HasSubstr("100%"));
  EXPECT_THAT(full, Not(HasSubstr(".]")));
  EXPECT_LE(full.size(), 60u);
  // Narrow terminals drop the bar, then cut the line.
  const std::string narrow = FormatProgressLine(
      Progress(kiln::v1::LoadProgress::STAGE_LOADING_WEIGHTS, 1, 2, 1, 2), 10);
  EXPECT_EQ(narrow.size(), 20u);  // width is at least 20
  EXPECT_THAT(narrow, Not(HasSubstr("[")));
}

TEST(ProgressRenderer, TtyRedrawsOneLine) {
  std::ostringstream out;
  ProgressRenderer r(&out, /*is_tty=*/true, 60);
  r.Update(Progress(kiln::v1::LoadProgress::STAGE_LOADING_WEIGHTS, 1, 4));
  r.Update(Progress(kiln::v1::LoadProgress::STAGE_LOADING_WEIGHTS, 4, 4));
  r.Finish();
  const std::string s = out.str();
  EXPECT_EQ(std::count(s.begin(), s.end(), '\r'), 2);
  EXPECT_EQ(std::count(s.begin(), s.end(), '\n'), 1);
  EXPECT_EQ(s.back(), '\n');
  EXPECT_THAT(s, HasSubstr("\x1b[K"));
  EXPECT_THAT(s, HasSubstr("100%"));
}

TEST(ProgressRenderer, NotTtyOneLinePerStage) {
  std::ostringstream out;
  ProgressRenderer r(&out, /*is_tty=*/false, 60);
  r.Update(Progress(kiln::v1::LoadProgress::STAGE_RESOLVING, 0, 0));
  r.Update(Progress(kiln::v1::LoadProgress::STAGE_LOADING_WEIGHTS, 1, 4));
  r.Update(Progress(kiln::v1::LoadProgress::STAGE_LOADING_WEIGHTS, 2, 4));
  r.Update(Progress(kiln::v1::LoadProgress::STAGE_LOADING_WEIGHTS, 4, 4));
  r.Update(Progress(kiln::v1::LoadProgress::STAGE_WARMING_UP, 0, 0));
  r.Finish();
  const std::string s = out.str();
  EXPECT_EQ(s.find('\r'), std::string::npos);
  EXPECT_EQ(s.find("\x1b"), std::string::npos);
  EXPECT_EQ(std::count(s.begin(), s.end(), '\n'), 3);
  EXPECT_THAT(s, HasSubstr("resolving\n"));
  EXPECT_THAT(s, HasSubstr("warming up\n"));
}

TEST(StageName, UnknownStageFromNewerServer) {
  EXPECT_EQ(StageName(static_cast<kiln::v1::LoadProgress::Stage>(99)), "stage 99");
}

}  // namespace
}  // namespace kiln::cli
