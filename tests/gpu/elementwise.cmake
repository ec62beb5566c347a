# tests/gpu: parity tests of the elementwise group (kiln_cc_test ... LABELS gpu).
