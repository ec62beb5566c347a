# tests/gpu: the whole-model golden tests of tests/golden, compiled a second time with
# KILN_GOLDEN_ON_CUDA so the same tests, fixtures and tolerances run on CUDA device 0
# (tests/golden/golden_backend.h). Without a device every test skips.
set(_kiln_golden ${PROJECT_SOURCE_DIR}/tests/golden)
foreach(_test model_golden_test quant/bnb_model_golden_test prequant/prequant_model_golden_test
              lora/lora_model_golden_test)
  get_filename_component(_name ${_test} NAME)
  kiln_cc_test(NAME gpu_${_name} SRCS ${_kiln_golden}/${_test}.cc
    DEPS kiln_model kiln_quant kiln_adapter kiln_kernels kiln_io LABELS gpu TIMEOUT 600)
  target_compile_definitions(gpu_${_name} PRIVATE KILN_GOLDEN_ON_CUDA)
endforeach()
