# tests/gpu: parity tests of the elementwise group (kiln_cc_test ... LABELS gpu).
kiln_cc_test(NAME elementwise_parity_test SRCS elementwise_parity_test.cc
  DEPS kiln_kernels kiln_kernels_cuda absl::strings LABELS gpu TIMEOUT 300)
kiln_cc_test(NAME cuda_backend_test SRCS cuda_backend_test.cc
  DEPS kiln_kernels kiln_kernels_cuda kiln_kernels_cuda_backend absl::strings LABELS gpu)
