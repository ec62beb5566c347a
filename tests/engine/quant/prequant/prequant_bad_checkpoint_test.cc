// Crafted pre-quantized checkpoints, each one mutation away from a valid module, written into a
// temp dir: the reader refuses every one with a status naming the tensor (reliability.md A15–A16)
// and never quotes the directory.
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "engine/io/checkpoint.h"
#include "engine/quant/bnb4.h"
#include "engine/quant/prequant/prequant_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "tests/engine/io/io_test_util.h"

namespace kiln::engine::quant {
namespace {

using ::testing::HasSubstr;

struct T {
  std::string dtype;  // safetensors spelling
  std::vector<int64_t> shape;
  std::string bytes;
};
using Tensors = std::map<std::string, T>;

template <typename V>
std::string Bytes(const std::vector<V>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(V));
}

std::string I32s(int64_t n, int32_t value) { return Bytes(std::vector<int32_t>(static_cast<size_t>(n), value)); }

void Write(const std::string& dir, const Tensors& ts) {
  std::vector<std::string> entries;
  std::string data;
  for (const auto& [name, t] : ts) {
    const uint64_t begin = data.size();
    data += t.bytes;
    entries.push_back(testing::Entry(name, t.dtype, "[" + absl::StrJoin(t.shape, ",") + "]", begin, data.size()));
  }
  testing::WriteFile(dir + "/model.safetensors", testing::Safetensors("{" + absl::StrJoin(entries, ",") + "}", data));
}

// GPTQ 4-bit module "m": out 8, in 16, group_size 8 (2 groups).
Tensors Gptq() {
  std::vector<int32_t> g_idx(16);
  for (int k = 0; k < 16; ++k) g_idx[k] = k / 8;
  return {{"m.qweight", {"I32", {2, 8}, I32s(16, 0x1234abcd)}},
          {"m.qzeros", {"I32", {2, 1}, I32s(2, 0x77777777)}},
          {"m.scales", {"F16", {2, 8}, Bytes(std::vector<uint16_t>(16, kernels::FloatToHalf(0.5f)))}},
          {"m.g_idx", {"I32", {16}, Bytes(g_idx)}}};
}
// AWQ module "a": out 8, in 16, group_size 8.
Tensors Awq() {
  return {{"a.qweight", {"I32", {16, 1}, I32s(16, 0x01234567)}},
          {"a.qzeros", {"I32", {2, 1}, I32s(2, 0x33333333)}},
          {"a.scales", {"F16", {2, 8}, Bytes(std::vector<uint16_t>(16, kernels::FloatToHalf(0.25f)))}}};
}
// bnb int8 module "i": out 4, in 6.
Tensors Int8() {
  return {{"i.weight", {"I8", {4, 6}, std::string(24, '\x05')}},
          {"i.SCB", {"F32", {4}, Bytes(std::vector<float>(4, 2.0f))}},
          {"i.weight_format", {"U8", {}, std::string(1, '\0')}}};
}
// bnb NF4 double-quantized module "b": out 4, in 64 (4 blocks of 64), made by kiln's quantizer.
const std::string kQs = "b.weight.quant_state.bitsandbytes__nf4";
std::string QuantStateJson(const std::string& blocksize = "64", const std::string& shape = "[4, 64]",
                           const std::string& type = "nf4", float offset = 0.0f) {
  return "{\"quant_type\": \"" + type + "\", \"blocksize\": " + blocksize + ", \"dtype\": \"float32\", \"shape\": " +
         shape + ", \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": " +
         std::to_string(offset) + "}";
}
struct Bnb4Base {
  Tensors tensors;
  DoubleQuantized dq;
};
Bnb4Base Bnb4() {
  std::vector<float> w(256);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.37f * static_cast<float>(i)) * (1.0f + static_cast<float>(i % 64) / 16.0f);
  auto packed = Quantize4bit(w, Bnb4Type::kNf4, 64);
  EXPECT_TRUE(packed.ok());
  Bnb4Base b;
  b.dq = DoubleQuantize(packed->absmax);
  std::span<const float> code = Code4bit(Bnb4Type::kNf4);
  std::span<const float> dyn = DynamicMap();
  b.tensors = {{"b.weight", {"U8", {128, 1}, Bytes(packed->packed)}},
               {"b.weight.absmax", {"U8", {4}, Bytes(b.dq.codes)}},
               {"b.weight.nested_absmax", {"F32", {1}, Bytes(b.dq.nested_absmax)}},
               {"b.weight.nested_quant_map", {"F32", {256}, Bytes(std::vector<float>(dyn.begin(), dyn.end()))}},
               {"b.weight.quant_map", {"F32", {16}, Bytes(std::vector<float>(code.begin(), code.end()))}}};
  // std::to_string keeps 6 decimals; write the exact offset instead.
  char offset[64];
  std::snprintf(offset, sizeof(offset), "%.9g", b.dq.offset);
  std::string js = QuantStateJson();
  js.replace(js.rfind("0.000000"), 8, offset);
  b.tensors[kQs] = {"U8", {static_cast<int64_t>(js.size())}, js};
  return b;
}
T Json(const std::string& text) { return {"U8", {static_cast<int64_t>(text.size())}, text}; }

PrequantConfig GptqConfig(bool desc_act = false) {
  PrequantConfig c;
  c.method = PrequantMethod::kGptq;
  c.gptq.group_size = 8;
  c.gptq.desc_act = desc_act;
  return c;
}
PrequantConfig AwqConfig(int64_t group_size = 8) {
  PrequantConfig c;
  c.method = PrequantMethod::kAwq;
  c.awq.group_size = group_size;
  return c;
}
PrequantConfig BnbConfig(BnbMode mode) {
  PrequantConfig c;
  c.method = PrequantMethod::kBitsAndBytes;
  c.bnb.mode = mode;
  c.bnb.quant_type = Bnb4Type::kNf4;
  return c;
}

absl::StatusOr<PrequantLinear> ReadIn(const testing::TempDir& dir, const Tensors& ts, const PrequantConfig& c,
                                      const std::string& module, int64_t out, int64_t in) {
  Write(dir.path(), ts);
  auto ckpt = Checkpoint::Open(dir.path());
  if (!ckpt.ok()) return ckpt.status();
  return ReadPrequantizedLinear(**ckpt, c, module, out, in);
}

void ExpectRefused(const Tensors& ts, const PrequantConfig& c, const std::string& module, int64_t out, int64_t in,
                   const std::vector<std::string>& substrings,
                   absl::StatusCode code = absl::StatusCode::kInvalidArgument) {
  testing::TempDir dir;
  auto r = ReadIn(dir, ts, c, module, out, in);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), code) << r.status();
  for (const std::string& s : substrings) EXPECT_THAT(std::string(r.status().message()), HasSubstr(s));
  EXPECT_THAT(std::string(r.status().message()), ::testing::Not(HasSubstr(dir.path())));
}

TEST(PrequantBadCheckpointTest, ValidBasesRead) {
  testing::TempDir d1, d2, d3, d4;
  EXPECT_TRUE(ReadIn(d1, Gptq(), GptqConfig(true), "m", 8, 16).ok());
  EXPECT_TRUE(ReadIn(d2, Awq(), AwqConfig(), "a", 8, 16).ok());
  EXPECT_TRUE(ReadIn(d3, Int8(), BnbConfig(BnbMode::k8Bit), "i", 4, 6).ok());
  Bnb4Base b = Bnb4();
  auto r = ReadIn(d4, b.tensors, BnbConfig(BnbMode::k4Bit), "b", 4, 64);
  ASSERT_TRUE(r.ok()) << r.status();
  // The nested absmax is expanded exactly as kiln's bit-exact bnb helper reconstructs it.
  std::vector<float> want = DequantizeAbsmax(b.dq);
  ASSERT_EQ(r->tensors[1].bytes.size(), want.size() * 4);
  EXPECT_EQ(std::memcmp(r->tensors[1].bytes.data(), want.data(), r->tensors[1].bytes.size()), 0);
  EXPECT_EQ(r->tensors[0].bytes, std::vector<uint8_t>(b.tensors["b.weight"].bytes.begin(),
                                                      b.tensors["b.weight"].bytes.end()));
}

TEST(PrequantBadCheckpointTest, GptqShapesGroupsAndGIdx) {
  auto with = [](std::function<void(Tensors&)> f) {
    Tensors t = Gptq();
    f(t);
    return t;
  };
  const PrequantConfig c = GptqConfig();
  ExpectRefused(with([](Tensors& t) { t["m.qweight"] = {"I32", {3, 8}, I32s(24, 0)}; }), c, "m", 8, 16,
                {"m.qweight", "[3, 8] I32", "expected [2, 8] I32"});
  ExpectRefused(with([](Tensors& t) { t["m.qweight"].dtype = "F32"; }), c, "m", 8, 16, {"m.qweight", "F32"});
  ExpectRefused(with([](Tensors& t) { t["m.qzeros"] = {"I32", {3, 1}, I32s(3, 0)}; }), c, "m", 8, 16,
                {"m.qzeros", "expected [2, 1] I32", "2 groups"});
  ExpectRefused(with([](Tensors& t) { t["m.scales"] = {"F16", {1, 8}, std::string(16, '\0')}; }), c, "m", 8, 16,
                {"m.scales", "expected [2, 8] F16", "ceil(16 / group_size 8)"});
  ExpectRefused(with([](Tensors& t) { std::memset(t["m.g_idx"].bytes.data() + 5 * 4, 2, 1); }), c, "m", 8, 16,
                {"m.g_idx[5] = 2", "[0, 2)"});
  ExpectRefused(with([](Tensors& t) { std::memset(t["m.g_idx"].bytes.data() + 15 * 4, 0xff, 4); }), c, "m", 8, 16,
                {"m.g_idx[15] = -1"});
  ExpectRefused(with([](Tensors& t) { t["m.g_idx"] = {"I32", {15}, I32s(15, 0)}; }), c, "m", 8, 16,
                {"m.g_idx", "expected [16] I32"});
  ExpectRefused(with([](Tensors& t) { t.erase("m.qzeros"); }), c, "m", 8, 16, {"m.qzeros"});
  ExpectRefused(with([](Tensors& t) { t.erase("m.g_idx"); }), GptqConfig(/*desc_act=*/true), "m", 8, 16,
                {"m.g_idx", "desc_act"});
  ExpectRefused(with([](Tensors& t) {
                  const uint16_t nan = 0x7e00;
                  std::memcpy(t["m.scales"].bytes.data() + 6, &nan, 2);
                }),
                c, "m", 8, 16, {"m.scales[3]", "not finite"});
  // in_features not a multiple of the pack factor (8 for 4-bit).
  ExpectRefused(Gptq(), c, "m", 8, 12, {"m", "in_features (12)"});
}

TEST(PrequantBadCheckpointTest, OptionalBias) {
  Tensors t = Gptq();
  t["m.bias"] = {"F16", {8}, std::string(16, '\x3c')};
  testing::TempDir dir;
  auto r = ReadIn(dir, t, GptqConfig(), "m", 8, 16);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->bias.has_value());
  EXPECT_EQ(r->bias->dtype, kernels::DType::kF16);
  EXPECT_EQ(r->bias->bytes, std::vector<uint8_t>(16, 0x3c));
  EXPECT_THAT(r->consumed, ::testing::Contains("m.bias"));
  t["m.bias"] = {"F16", {7}, std::string(14, '\0')};
  ExpectRefused(t, GptqConfig(), "m", 8, 16, {"m.bias", "expected [8] F32"});
}

TEST(PrequantBadCheckpointTest, Awq) {
  Tensors t = Awq();
  t["a.qweight"] = {"I32", {16, 2}, I32s(32, 0)};
  ExpectRefused(t, AwqConfig(), "a", 8, 16, {"a.qweight", "expected [16, 1] I32"});
  ExpectRefused(Awq(), AwqConfig(5), "a", 8, 16, {"a", "group_size 5"});
  t = Awq();
  t["a.scales"] = {"BF16", {2, 8}, std::string(32, '\0')};
  testing::TempDir dir;
  auto r = ReadIn(dir, t, AwqConfig(), "a", 8, 16);  // BF16 scales widen to F32
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->matrix.awq.scales.dtype(), kernels::DType::kF32);
}

TEST(PrequantBadCheckpointTest, Int8) {
  const PrequantConfig c = BnbConfig(BnbMode::k8Bit);
  Tensors t = Int8();
  t["i.SCB"] = {"F32", {3}, Bytes(std::vector<float>(3, 1.0f))};
  ExpectRefused(t, c, "i", 4, 6, {"i.SCB", "expected [4] F32"});
  t = Int8();
  t["i.weight_format"].bytes = std::string(1, '\1');
  ExpectRefused(t, c, "i", 4, 6, {"i.weight_format = 1"}, absl::StatusCode::kUnimplemented);
  t = Int8();
  t["i.weight"].dtype = "U8";
  ExpectRefused(t, c, "i", 4, 6, {"i.weight", "expected [4, 6] I8"});
  t = Int8();
  t.erase("i.SCB");
  ExpectRefused(t, c, "i", 4, 6, {"i.SCB"});
}

TEST(PrequantBadCheckpointTest, Bnb4QuantState) {
  const PrequantConfig c = BnbConfig(BnbMode::k4Bit);
  auto with = [](std::function<void(Tensors&)> f) {
    Tensors t = Bnb4().tensors;
    f(t);
    return t;
  };
  ExpectRefused(with([](Tensors& t) { t[kQs] = Json("{\"quant_type\": \"nf4\", \"blocksize\": "); }), c, "b", 4, 64,
                {kQs});
  ExpectRefused(with([](Tensors& t) { t[kQs] = Json(QuantStateJson("0")); }), c, "b", 4, 64, {kQs, "blocksize"});
  ExpectRefused(with([](Tensors& t) { t[kQs] = Json(QuantStateJson("48")); }), c, "b", 4, 64, {"blocksize", "48"});
  ExpectRefused(with([](Tensors& t) { t[kQs] = Json(QuantStateJson("64", "[64, 4]")); }), c, "b", 4, 64,
                {"shape", "[4, 64]"});
  ExpectRefused(with([](Tensors& t) { t[kQs] = Json(QuantStateJson("64", "[4, 64]", "fp4")); }), c, "b", 4, 64,
                {"quant_type"});
  ExpectRefused(with([](Tensors& t) { t[kQs] = Json(std::string(50, '[') + std::string(50, ']')); }), c, "b", 4, 64,
                {kQs});
  ExpectRefused(with([](Tensors& t) { t["b.weight.quant_state.bitsandbytes__fp4"] = t[kQs]; }), c, "b", 4, 64,
                {"b.weight", "both"});
  ExpectRefused(with([](Tensors& t) { t.erase(kQs); }), c, "b", 4, 64, {"b.weight", "neither"});
}

TEST(PrequantBadCheckpointTest, Bnb4Tensors) {
  const PrequantConfig c = BnbConfig(BnbMode::k4Bit);
  auto with = [](std::function<void(Tensors&)> f) {
    Tensors t = Bnb4().tensors;
    f(t);
    return t;
  };
  ExpectRefused(with([](Tensors& t) { t.erase("b.weight.absmax"); }), c, "b", 4, 64, {"b.weight.absmax"});
  ExpectRefused(with([](Tensors& t) { t["b.weight.absmax"] = {"F32", {4}, std::string(16, '\0')}; }), c, "b", 4, 64,
                {"b.weight.absmax", "expected [4] U8"});
  ExpectRefused(with([](Tensors& t) { t["b.weight.absmax"] = {"U8", {5}, std::string(5, '\0')}; }), c, "b", 4, 64,
                {"b.weight.absmax", "one per block of 64"});
  ExpectRefused(with([](Tensors& t) { t.erase("b.weight.nested_absmax"); }), c, "b", 4, 64,
                {kQs, "nested_absmax"});
  ExpectRefused(with([](Tensors& t) { t["b.weight.nested_quant_map"] = {"F32", {255}, std::string(1020, '\0')}; }),
                c, "b", 4, 64, {"b.weight.nested_quant_map", "expected [256] F32"});
  ExpectRefused(with([](Tensors& t) { t["b.weight.quant_map"].bytes[0] ^= 1; }), c, "b", 4, 64,
                {"b.weight.quant_map", "NF4"});
  ExpectRefused(with([](Tensors& t) { t["b.weight"] = {"U8", {127, 1}, std::string(127, '\0')}; }), c, "b", 4, 64,
                {"b.weight", "expected [128, 1] U8"});
  // bnb_4bit_quant_storage: the same bytes stored as BF16 [64, 1] read identically.
  Tensors t = Bnb4().tensors;
  const std::string packed = t["b.weight"].bytes;
  t["b.weight"] = {"BF16", {64, 1}, packed};
  testing::TempDir dir;
  auto r = ReadIn(dir, t, c, "b", 4, 64);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(std::string(r->tensors[0].bytes.begin(), r->tensors[0].bytes.end()), packed);
}

}  // namespace
}  // namespace kiln::engine::quant
