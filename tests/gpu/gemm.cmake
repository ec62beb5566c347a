# tests/gpu: parity tests of the gemm group (kiln_cc_test ... LABELS gpu).
