# tests/gpu: parity tests of the attention group (kiln_cc_test ... LABELS gpu).
kiln_cc_test(NAME attention_parity_test SRCS attention_parity_test.cc
  DEPS kiln_kernels kiln_kernels_cuda kiln_kernels_cuda_backend LABELS gpu TIMEOUT 600)
