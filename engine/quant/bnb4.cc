#include "engine/quant/bnb4.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace kiln::engine::quant {
namespace {

constexpr std::array<float, 16> kNf4 = {
    -0x1.0p+0f,          -0x1.647362p-1f, -0x1.0cd66p-1f,  -0x1.94654p-2f, -0x1.23449ap-2f, -0x1.7a6a7ep-3f,
    -0x1.74f0e2p-4f,     0.0f,            0x1.45f5fep-4f,  0x1.4995c6p-3f, 0x1.f809bap-3f,  0x1.5a0674p-2f,
    0x1.c3497p-2f,       0x1.200f56p-1f,  0x1.722766p-1f,  0x1.0p+0f};
// bitsandbytes' FP4 table in bit-pattern order: {0, 0.0625, 8, 12, 4, 6, 2, 3} / 12, then negated.
constexpr std::array<float, 16> kFp4 = {
    0.0f,  0x1.555556p-8f,  0x1.555556p-1f,  1.0f,  0x1.555556p-2f,  0.5f,  0x1.555556p-3f,  0.25f,
    0.0f, -0x1.555556p-8f, -0x1.555556p-1f, -1.0f, -0x1.555556p-2f, -0.5f, -0x1.555556p-3f, -0.25f};
// create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), sorted (fp32 values as
// torch builds them through linspace; copied from bitsandbytes 0.50, checked by the fixtures).
constexpr std::array<float, 256> kDynamic = {
    -0x1.fc66660000000p-1f, -0x1.f533340000000p-1f, -0x1.ee00000000000p-1f, -0x1.e6cccc0000000p-1f,
    -0x1.df999a0000000p-1f, -0x1.d866660000000p-1f, -0x1.d133340000000p-1f, -0x1.ca00000000000p-1f,
    -0x1.c2cccc0000000p-1f, -0x1.bb999a0000000p-1f, -0x1.b466660000000p-1f, -0x1.ad33340000000p-1f,
    -0x1.a600000000000p-1f, -0x1.9ecccc0000000p-1f, -0x1.97999a0000000p-1f, -0x1.9066660000000p-1f,
    -0x1.8933340000000p-1f, -0x1.8200000000000p-1f, -0x1.7acccc0000000p-1f, -0x1.73999a0000000p-1f,
    -0x1.6c66680000000p-1f, -0x1.6533340000000p-1f, -0x1.5e00000000000p-1f, -0x1.56cccc0000000p-1f,
    -0x1.4f999a0000000p-1f, -0x1.4866680000000p-1f, -0x1.4133340000000p-1f, -0x1.3a00000000000p-1f,
    -0x1.32cccc0000000p-1f, -0x1.2b999a0000000p-1f, -0x1.2466680000000p-1f, -0x1.1d33340000000p-1f,
    -0x1.1600000000000p-1f, -0x1.0ecccc0000000p-1f, -0x1.0799980000000p-1f, -0x1.0066660000000p-1f,
    -0x1.f266640000000p-2f, -0x1.e400000000000p-2f, -0x1.d599980000000p-2f, -0x1.c733340000000p-2f,
    -0x1.b8cccc0000000p-2f, -0x1.aa66660000000p-2f, -0x1.9c00000000000p-2f, -0x1.8d99980000000p-2f,
    -0x1.7f33340000000p-2f, -0x1.70cccc0000000p-2f, -0x1.6266660000000p-2f, -0x1.5400000000000p-2f,
    -0x1.4599980000000p-2f, -0x1.3733340000000p-2f, -0x1.28cccc0000000p-2f, -0x1.1a66680000000p-2f,
    -0x1.0c00000000000p-2f, -0x1.fb33320000000p-3f, -0x1.de66660000000p-3f, -0x1.c1999a0000000p-3f,
    -0x1.a4cccc0000000p-3f, -0x1.8800000000000p-3f, -0x1.6b33340000000p-3f, -0x1.4e66660000000p-3f,
    -0x1.31999a0000000p-3f, -0x1.14cccc0000000p-3f, -0x1.f000000000000p-4f, -0x1.b666680000000p-4f,
    -0x1.93d70a0000000p-4f, -0x1.8851ee0000000p-4f, -0x1.7cccce0000000p-4f, -0x1.7147ae0000000p-4f,
    -0x1.65c2900000000p-4f, -0x1.5a3d700000000p-4f, -0x1.4eb8540000000p-4f, -0x1.4333340000000p-4f,
    -0x1.37ae140000000p-4f, -0x1.2c28f60000000p-4f, -0x1.20a3d60000000p-4f, -0x1.151eba0000000p-4f,
    -0x1.09999a0000000p-4f, -0x1.fc28f60000000p-5f, -0x1.e51eba0000000p-5f, -0x1.ce147a0000000p-5f,
    -0x1.b70a3e0000000p-5f, -0x1.a000000000000p-5f, -0x1.88f5c20000000p-5f, -0x1.71eb860000000p-5f,
    -0x1.5ae1460000000p-5f, -0x1.43d70a0000000p-5f, -0x1.2cccce0000000p-5f, -0x1.15c2900000000p-5f,
    -0x1.fd70a40000000p-6f, -0x1.cf5c2a0000000p-6f, -0x1.a147ae0000000p-6f, -0x1.7333340000000p-6f,
    -0x1.451eba0000000p-6f, -0x1.170a3e0000000p-6f, -0x1.d1eb860000000p-7f, -0x1.75c2900000000p-7f,
    -0x1.3e76c80000000p-7f, -0x1.2c08300000000p-7f, -0x1.19999a0000000p-7f, -0x1.072b020000000p-7f,
    -0x1.e978d40000000p-8f, -0x1.c49ba60000000p-8f, -0x1.9fbe760000000p-8f, -0x1.7ae1480000000p-8f,
    -0x1.56041a0000000p-8f, -0x1.3126e80000000p-8f, -0x1.0c49ba0000000p-8f, -0x1.ced9140000000p-9f,
    -0x1.851eb80000000p-9f, -0x1.3b645a0000000p-9f, -0x1.e353f80000000p-10f, -0x1.4fdf3a0000000p-10f,
    -0x1.eecbfe0000000p-11f, -0x1.b3d07c0000000p-11f, -0x1.78d5000000000p-11f, -0x1.3dd9820000000p-11f,
    -0x1.02de020000000p-11f, -0x1.8fc5060000000p-12f, -0x1.19ce0a0000000p-12f, -0x1.47ae160000000p-13f,
    -0x1.743e960000000p-14f, -0x1.15df660000000p-14f, -0x1.6f00680000000p-15f, -0x1.64840c0000000p-16f,
    -0x1.040bfe0000000p-17f, -0x1.b435280000000p-19f, -0x1.27476e0000000p-21f, 0x0.0p+0f,
    0x1.27476e0000000p-21f, 0x1.b435280000000p-19f, 0x1.040bfe0000000p-17f, 0x1.64840c0000000p-16f,
    0x1.6f00680000000p-15f, 0x1.15df660000000p-14f, 0x1.743e960000000p-14f, 0x1.47ae160000000p-13f,
    0x1.19ce0a0000000p-12f, 0x1.8fc5060000000p-12f, 0x1.02de020000000p-11f, 0x1.3dd9820000000p-11f,
    0x1.78d5000000000p-11f, 0x1.b3d07c0000000p-11f, 0x1.eecbfe0000000p-11f, 0x1.4fdf3a0000000p-10f,
    0x1.e353f80000000p-10f, 0x1.3b645a0000000p-9f, 0x1.851eb80000000p-9f, 0x1.ced9140000000p-9f,
    0x1.0c49ba0000000p-8f, 0x1.3126e80000000p-8f, 0x1.56041a0000000p-8f, 0x1.7ae1480000000p-8f,
    0x1.9fbe760000000p-8f, 0x1.c49ba60000000p-8f, 0x1.e978d40000000p-8f, 0x1.072b020000000p-7f,
    0x1.19999a0000000p-7f, 0x1.2c08300000000p-7f, 0x1.3e76c80000000p-7f, 0x1.75c2900000000p-7f,
    0x1.d1eb860000000p-7f, 0x1.170a3e0000000p-6f, 0x1.451eba0000000p-6f, 0x1.7333340000000p-6f,
    0x1.a147ae0000000p-6f, 0x1.cf5c2a0000000p-6f, 0x1.fd70a40000000p-6f, 0x1.15c2900000000p-5f,
    0x1.2cccce0000000p-5f, 0x1.43d70a0000000p-5f, 0x1.5ae1460000000p-5f, 0x1.71eb860000000p-5f,
    0x1.88f5c20000000p-5f, 0x1.a000000000000p-5f, 0x1.b70a3e0000000p-5f, 0x1.ce147a0000000p-5f,
    0x1.e51eba0000000p-5f, 0x1.fc28f60000000p-5f, 0x1.09999a0000000p-4f, 0x1.151eba0000000p-4f,
    0x1.20a3d60000000p-4f, 0x1.2c28f60000000p-4f, 0x1.37ae140000000p-4f, 0x1.4333340000000p-4f,
    0x1.4eb8540000000p-4f, 0x1.5a3d700000000p-4f, 0x1.65c2900000000p-4f, 0x1.7147ae0000000p-4f,
    0x1.7cccce0000000p-4f, 0x1.8851ee0000000p-4f, 0x1.93d70a0000000p-4f, 0x1.b666680000000p-4f,
    0x1.f000000000000p-4f, 0x1.14cccc0000000p-3f, 0x1.31999a0000000p-3f, 0x1.4e66660000000p-3f,
    0x1.6b33340000000p-3f, 0x1.8800000000000p-3f, 0x1.a4cccc0000000p-3f, 0x1.c1999a0000000p-3f,
    0x1.de66660000000p-3f, 0x1.fb33320000000p-3f, 0x1.0c00000000000p-2f, 0x1.1a66680000000p-2f,
    0x1.28cccc0000000p-2f, 0x1.3733340000000p-2f, 0x1.4599980000000p-2f, 0x1.5400000000000p-2f,
    0x1.6266660000000p-2f, 0x1.70cccc0000000p-2f, 0x1.7f33340000000p-2f, 0x1.8d99980000000p-2f,
    0x1.9c00000000000p-2f, 0x1.aa66660000000p-2f, 0x1.b8cccc0000000p-2f, 0x1.c733340000000p-2f,
    0x1.d599980000000p-2f, 0x1.e400000000000p-2f, 0x1.f266640000000p-2f, 0x1.0066660000000p-1f,
    0x1.0799980000000p-1f, 0x1.0ecccc0000000p-1f, 0x1.1600000000000p-1f, 0x1.1d33340000000p-1f,
    0x1.2466680000000p-1f, 0x1.2b999a0000000p-1f, 0x1.32cccc0000000p-1f, 0x1.3a00000000000p-1f,
    0x1.4133340000000p-1f, 0x1.4866680000000p-1f, 0x1.4f999a0000000p-1f, 0x1.56cccc0000000p-1f,
    0x1.5e00000000000p-1f, 0x1.6533340000000p-1f, 0x1.6c66680000000p-1f, 0x1.73999a0000000p-1f,
    0x1.7acccc0000000p-1f, 0x1.8200000000000p-1f, 0x1.8933340000000p-1f, 0x1.9066660000000p-1f,
    0x1.97999a0000000p-1f, 0x1.9ecccc0000000p-1f, 0x1.a600000000000p-1f, 0x1.ad33340000000p-1f,
    0x1.b466660000000p-1f, 0x1.bb999a0000000p-1f, 0x1.c2cccc0000000p-1f, 0x1.ca00000000000p-1f,
    0x1.d133340000000p-1f, 0x1.d866660000000p-1f, 0x1.df999a0000000p-1f, 0x1.e6cccc0000000p-1f,
    0x1.ee00000000000p-1f, 0x1.f533340000000p-1f, 0x1.fc66660000000p-1f, 0x1.0000000000000p+0f,};

// Midpoints of the sorted table and the sorted -> table-index map (stable for FP4's two zeros).
struct Bounds {
  std::array<float, 15> mid;
  std::array<uint8_t, 16> order;
};

Bounds MakeBounds(std::span<const float> code) {
  Bounds b;
  std::array<uint8_t, 16> idx;
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](uint8_t a, uint8_t c) { return code[a] < code[c]; });
  b.order = idx;
  for (int i = 0; i < 15; ++i) b.mid[static_cast<size_t>(i)] = (code[idx[static_cast<size_t>(i)]] + code[idx[static_cast<size_t>(i) + 1]]) / 2.0f;
  return b;
}

const Bounds& BoundsFor(Bnb4Type type) {
  static const Bounds nf4 = MakeBounds(kNf4), fp4 = MakeBounds(kFp4);
  return type == Bnb4Type::kNf4 ? nf4 : fp4;
}

// torch.bucketize(x, mid, right=False): the number of midpoints strictly below x.
inline uint8_t Bucket(const Bounds& b, float x) {
  uint8_t i = 0;
  while (i < 15 && b.mid[i] < x) ++i;
  return b.order[i];
}

// torch's CPU float sum (aten/src/ATen/native/cpu/SumKernel.cpp, cascade_sum): per lane of an
// 8-float vector, rows of 4 (ilp) accumulated through 4 cascade levels, tail vectors folded
// into accumulator 0, the 4 accumulators added; then the scalar tail and the 8 lanes added in
// order. Reproduced so that offset = absmax.mean() is bit-identical to bitsandbytes'
// (torch.mean == sum / n); checked against torch on all sizes 1..69 and up to 20000.
float CascadeRowSum(int64_t size, const std::function<float(int64_t)>& at) {
  constexpr int kLevels = 4, kIlp = 4;
  const int64_t rows = size / kIlp;
  float acc[kLevels][kIlp] = {};
  if (rows > 0) {
    int64_t ceil_log2 = 0;
    while ((int64_t{1} << ceil_log2) < rows) ++ceil_log2;
    const int64_t power = std::max<int64_t>(4, ceil_log2 / kLevels);
    const int64_t step = int64_t{1} << power, mask = step - 1;
    int64_t i = 0;
    for (; i + step <= rows;) {
      for (int64_t j = 0; j < step; ++j, ++i) {
        for (int k = 0; k < kIlp; ++k) acc[0][k] += at(i * kIlp + k);
      }
      for (int j = 1; j < kLevels; ++j) {
        for (int k = 0; k < kIlp; ++k) {
          acc[j][k] += acc[j - 1][k];
          acc[j - 1][k] = 0.0f;
        }
        if ((i & (mask << (j * power))) != 0) break;
      }
    }
    for (; i < rows; ++i) {
      for (int k = 0; k < kIlp; ++k) acc[0][k] += at(i * kIlp + k);
    }
    for (int j = 1; j < kLevels; ++j) {
      for (int k = 0; k < kIlp; ++k) acc[0][k] += acc[j][k];
    }
  }
  for (int64_t i = rows * kIlp; i < size; ++i) acc[0][0] += at(i);
  for (int k = 1; k < kIlp; ++k) acc[0][0] += acc[0][k];
  return acc[0][0];
}

float TorchMean(std::span<const float> a) {
  constexpr int64_t kLanes = 8;
  const int64_t n = static_cast<int64_t>(a.size());
  float sum = 0.0f;
  if (n < kLanes) {
    sum = CascadeRowSum(n, [&](int64_t i) { return a[static_cast<size_t>(i)]; });
  } else {
    const int64_t vecs = n / kLanes;
    float lanes[kLanes];
    for (int64_t l = 0; l < kLanes; ++l) {
      lanes[l] = CascadeRowSum(vecs, [&](int64_t v) { return a[static_cast<size_t>(v * kLanes + l)]; });
    }
    for (int64_t i = vecs * kLanes; i < n; ++i) sum += a[static_cast<size_t>(i)];
    for (int64_t l = 0; l < kLanes; ++l) sum += lanes[l];
  }
  return sum / static_cast<float>(n);
}

// bitsandbytes 0.50's native 8-bit blockwise quantizer (quantize_cpu_impl) does not search the
// map per value: it rounds the normalized value onto 65536 evenly spaced points of [-1, 1] and
// reads the code from a table that holds, per point, the number of map midpoints strictly
// below it. Values within half a grid step (~1.5e-5) of a midpoint can therefore land on the
// farther code; that is the behaviour to reproduce, so both steps are emulated in fp32, op for
// op as the shipped binary computes them (read from its disassembly, checked by the fixtures).
constexpr int kGridPoints = 65536;

const std::array<uint8_t, kGridPoints>& DynamicGridLut() {
  static const std::array<uint8_t, kGridPoints> lut = [] {
    std::array<float, 255> mid;
    for (size_t i = 0; i < mid.size(); ++i) mid[i] = (kDynamic[i] + kDynamic[i + 1]) * 0.5f;
    std::array<uint8_t, kGridPoints> t{};
    size_t code = 0;
    for (int i = 0; i < kGridPoints; ++i) {
      // Separate statements: fp32 (2i) / 65535, then - 1, each rounded.
      const float twice = static_cast<float>(i) + static_cast<float>(i);
      const float point = twice / 65535.0f - 1.0f;
      while (code < mid.size() && point > mid[code]) ++code;
      t[static_cast<size_t>(i)] = static_cast<uint8_t>(code);
    }
    return t;
  }();
  return lut;
}

// Grid point of a normalized value: clamp to [-1, 1], (x + 1) * 0.5 in fp32, then one fused
// multiply-add by 65535 plus 0.5 (the binary uses vfmadd), truncated. NaN maps to point 0 (the
// binary's float-to-int conversion yields 0x80000000, whose low 16 bits are 0).
inline size_t GridIndex(float x) {
  if (std::isnan(x)) return 0;
  const float clamped = std::clamp(x, -1.0f, 1.0f);
  const float half = (clamped + 1.0f) * 0.5f;
  return static_cast<size_t>(static_cast<int32_t>(std::fma(half, 65535.0f, 0.5f)));
}

}  // namespace

std::span<const float> Code4bit(Bnb4Type type) { return type == Bnb4Type::kNf4 ? std::span<const float>(kNf4) : std::span<const float>(kFp4); }
std::span<const float> DynamicMap() { return kDynamic; }

absl::StatusOr<Packed4bit> Quantize4bit(std::span<const float> w, Bnb4Type type, int64_t blocksize) {
  if (blocksize < 32 || blocksize > 4096 || (blocksize & (blocksize - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("blocksize: must be a power of two in [32, 4096], got ", blocksize));
  }
  const Bounds& bounds = BoundsFor(type);
  const int64_t n = static_cast<int64_t>(w.size());
  const int64_t blocks = (n + blocksize - 1) / blocksize;
  Packed4bit out;
  out.absmax.resize(static_cast<size_t>(blocks));
  out.packed.assign(static_cast<size_t>((n + 1) / 2), 0);
  std::vector<uint8_t> q(static_cast<size_t>(n + 1), Bucket(bounds, 0.0f));  // padding element: code of 0
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * blocksize, end = std::min(n, begin + blocksize);
    float am = 0.0f;
    for (int64_t j = begin; j < end; ++j) am = std::max(am, std::fabs(w[static_cast<size_t>(j)]));
    const float clamped = std::max(am, 1e-38f);
    const bool partial = end - begin < blocksize;
    // The reference stores the unclamped absmax for full blocks and the clamped one for the tail.
    out.absmax[static_cast<size_t>(b)] = partial ? clamped : am;
    const float inv = 1.0f / clamped;
    for (int64_t j = begin; j < end; ++j) {
      const float x = w[static_cast<size_t>(j)];
      const float s = std::clamp(partial ? x / clamped : x * inv, -1.0f, 1.0f);
      q[static_cast<size_t>(j)] = Bucket(bounds, s);
    }
  }
  for (int64_t i = 0; i < (n + 1) / 2; ++i) {
    out.packed[static_cast<size_t>(i)] = static_cast<uint8_t>((q[static_cast<size_t>(2 * i)] << 4) | q[static_cast<size_t>(2 * i + 1)]);
  }
  return out;
}

DoubleQuantized DoubleQuantize(std::span<const float> absmax) {
  DoubleQuantized dq;
  const int64_t n = static_cast<int64_t>(absmax.size());
  if (n == 0) return dq;
  dq.offset = TorchMean(absmax);
  std::vector<float> centered(absmax.size());
  for (size_t i = 0; i < absmax.size(); ++i) centered[i] = absmax[i] - dq.offset;
  const std::array<uint8_t, kGridPoints>& lut = DynamicGridLut();
  const int64_t blocks = (n + kNestedBlocksize - 1) / kNestedBlocksize;
  dq.nested_absmax.resize(static_cast<size_t>(blocks));
  dq.codes.assign(absmax.size(), 0);
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * kNestedBlocksize, end = std::min(n, begin + kNestedBlocksize);
    // The reference's max skips NaN (strict > against a -inf start) and is then floored at 0.
    float am = -std::numeric_limits<float>::infinity();
    for (int64_t j = begin; j < end; ++j) {
      const float a = std::fabs(centered[static_cast<size_t>(j)]);
      if (a > am) am = a;
    }
    am = 0.0f > am ? 0.0f : am;
    dq.nested_absmax[static_cast<size_t>(b)] = am;
    if (am == 0.0f) continue;  // all codes 0 (one block of equal absmax)
    // A multiply by the fp32 reciprocal, not a division: the two differ in the last bit.
    const float inv = 1.0f / am;
    for (int64_t j = begin; j < end; ++j) {
      dq.codes[static_cast<size_t>(j)] = lut[GridIndex(centered[static_cast<size_t>(j)] * inv)];
    }
  }
  return dq;
}

std::vector<float> DequantizeAbsmax(const DoubleQuantized& dq) {
  std::vector<float> out(dq.codes.size());
  for (size_t i = 0; i < out.size(); ++i) {
    // Two separately rounded fp32 operations, as the reference (native dequant, then + offset).
    volatile float scaled = kDynamic[dq.codes[i]] * dq.nested_absmax[i / kNestedBlocksize];
    out[i] = scaled + dq.offset;
  }
  return out;
}

absl::StatusOr<std::vector<float>> Dequantize4bit(std::span<const uint8_t> packed, std::span<const float> absmax,
                                                  Bnb4Type type, int64_t blocksize, int64_t n) {
  if (blocksize <= 0 || n < 0 || static_cast<int64_t>(packed.size()) != (n + 1) / 2 ||
      static_cast<int64_t>(absmax.size()) != (n + blocksize - 1) / blocksize) {
    return absl::InvalidArgumentError(absl::StrCat("Dequantize4bit: ", packed.size(), " packed bytes and ",
                                                   absmax.size(), " absmax values do not fit ", n,
                                                   " elements with blocksize ", blocksize));
  }
  const std::span<const float> code = Code4bit(type);
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    const uint8_t byte = packed[static_cast<size_t>(j / 2)];
    const uint8_t nib = (j % 2 == 0) ? byte >> 4 : byte & 0xF;
    out[static_cast<size_t>(j)] = code[nib] * absmax[static_cast<size_t>(j / blocksize)];
  }
  return out;
}

}  // namespace kiln::engine::quant
