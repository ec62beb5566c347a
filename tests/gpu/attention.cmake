# tests/gpu: parity tests of the attention group (kiln_cc_test ... LABELS gpu).
