#include <cstdlib>
#include <string_view>

#include "kernels/cpu/isa_kernels.h"
#include "util/error.h"

namespace retort::cpu {

namespace {
const IsaKernels& choose_kernels() {
  const char* forced = std::getenv("RETORT_ISA");
  const std::string_view want = forced ? forced : "";
  if (want == "scalar") return scalar_kernels();
  if (want == "avx2") {
    const IsaKernels* kernels = avx2_kernels();
    require(kernels != nullptr, ErrorKind::Unsupported, "RETORT_ISA=avx2 but this CPU lacks AVX2/FMA/F16C");
    return *kernels;
  }
  if (want == "avx512") {
    const IsaKernels* kernels = avx512_kernels();
    require(kernels != nullptr, ErrorKind::Unsupported, "RETORT_ISA=avx512 but this CPU lacks AVX-512 F/BW/VL");
    return *kernels;
  }
  require(want.empty(), ErrorKind::InvalidInput, "RETORT_ISA='{}' is not one of scalar, avx2, avx512", want);
  if (const IsaKernels* kernels = avx512_kernels()) return *kernels;
  if (const IsaKernels* kernels = avx2_kernels()) return *kernels;
  return scalar_kernels();
}
}  // namespace

const IntegerDotKernels* integer_kernels_for(const IsaKernels& kernels) {
  if (&kernels == &scalar_kernels()) return nullptr;
  if (&kernels == avx512_kernels()) {
    if (const IntegerDotKernels* vnni = vnni_integer_kernels()) return vnni;
  }
  return avx2_integer_kernels();
}

const Bf16DotKernels* bf16_dot_kernels_for(const IsaKernels& kernels) {
  return &kernels == avx512_kernels() ? avx512bf16_dot_kernels() : nullptr;
}

const IsaKernels& active_kernels() {
  static const IsaKernels& chosen = choose_kernels();
  return chosen;
}

}  // namespace retort::cpu
