#include "cli/progress.h"

#include <algorithm>
#include <cstdio>

#include "cli/output.h"

namespace kiln::cli {

std::string StageName(kiln::v1::LoadProgress::Stage stage) {
  switch (stage) {
    case kiln::v1::LoadProgress::STAGE_UNSPECIFIED: return "working";
    case kiln::v1::LoadProgress::STAGE_RESOLVING: return "resolving";
    case kiln::v1::LoadProgress::STAGE_READING_CONFIG: return "reading config";
    case kiln::v1::LoadProgress::STAGE_PLANNING: return "planning";
    case kiln::v1::LoadProgress::STAGE_LOADING_WEIGHTS: return "loading weights";
    case kiln::v1::LoadProgress::STAGE_WARMING_UP: return "warming up";
    // Proto enums are open: a newer server may send a stage this client does not know.
    case kiln::v1::LoadProgress_Stage_LoadProgress_Stage_INT_MIN_SENTINEL_DO_NOT_USE_:
    case kiln::v1::LoadProgress_Stage_LoadProgress_Stage_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
  return "stage " + std::to_string(static_cast<int>(stage));
}

std::string FormatProgressLine(const kiln::v1::LoadProgress& p, int width) {
  width = std::max(width, 20);
  std::string line = StageName(p.stage());
  // Servers often phrase the message as "<stage> <detail>"; do not say the stage twice.
  const bool message_names_stage = p.message().rfind(line, 0) == 0;
  if (message_names_stage) line = p.message();
  std::string tail;
  const bool have_bytes = p.bytes_total() > 0;
  if (have_bytes) {
    const int64_t done = std::clamp<int64_t>(p.bytes_done(), 0, p.bytes_total());
    const int percent = static_cast<int>(done * 100 / p.bytes_total());
    char pct[8];
    std::snprintf(pct, sizeof(pct), "%3d%%", percent);
    tail += std::string(" ") + pct + " " + FormatBytes(done) + "/" + FormatBytes(p.bytes_total());
  }
  if (p.tensors_total() > 0) {
    tail += " " + std::to_string(p.tensors_done()) + "/" + std::to_string(p.tensors_total()) +
            " tensors";
  }
  if (have_bytes) {
    // The bar takes the room the stage and numbers leave; the free-form message (e.g. the
    // tensor being loaded) comes last and is what gets cut on a narrow terminal.
    const int message_room = p.message().empty() || message_names_stage ? 0 : 16;
    const int room = width - static_cast<int>(line.size() + tail.size()) - 3 - message_room;
    const int bar = std::clamp(room, 0, 30);
    if (bar >= 5) {
      const int64_t done = std::clamp<int64_t>(p.bytes_done(), 0, p.bytes_total());
      const int filled = static_cast<int>(done * bar / p.bytes_total());
      line += " [" + std::string(filled, '#') + std::string(bar - filled, '.') + "]";
    }
  }
  if (!p.message().empty() && !message_names_stage) tail += " " + p.message();
  line += tail;
  if (static_cast<int>(line.size()) > width) {
    // Cut on a UTF-8 character boundary (server messages may hold non-ASCII names).
    size_t cut = static_cast<size_t>(width);
    while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
    line.resize(cut);
  }
  return line;
}

ProgressRenderer::ProgressRenderer(std::ostream* out, bool is_tty, int width)
    : out_(out), is_tty_(is_tty), width_(width) {}

void ProgressRenderer::Update(const kiln::v1::LoadProgress& progress) {
  if (is_tty_) {
    // Leave the last column free so the terminal never wraps the line.
    *out_ << "\r" << FormatProgressLine(progress, width_ - 1) << "\x1b[K" << std::flush;
    drawn_ = true;
    return;
  }
  if (have_stage_ && progress.stage() == last_stage_) return;
  have_stage_ = true;
  last_stage_ = progress.stage();
  *out_ << FormatProgressLine(progress, 1000) << "\n" << std::flush;
}

void ProgressRenderer::Finish() {
  if (is_tty_ && drawn_) *out_ << "\n" << std::flush;
  drawn_ = false;
}

}  // namespace kiln::cli
