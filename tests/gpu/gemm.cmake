# tests/gpu: parity tests of the gemm group (kiln_cc_test ... LABELS gpu).
kiln_cc_test(NAME gemm_parity_test SRCS gemm_parity_test.cc DEPS kiln_kernels kiln_kernels_cuda LABELS gpu TIMEOUT 600)
kiln_cc_test(NAME quant_parity_test SRCS quant_parity_test.cc DEPS kiln_kernels kiln_kernels_cuda LABELS gpu TIMEOUT 900)
kiln_cc_test(NAME lora_parity_test SRCS lora_parity_test.cc DEPS kiln_kernels kiln_kernels_cuda LABELS gpu TIMEOUT 600)
