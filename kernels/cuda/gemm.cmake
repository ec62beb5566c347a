# Sources of the gemm group (cuBLASLt GEMM, GEMV, quantized matmuls, LoRA SGMV).
set(KILN_CUDA_GEMM_SRCS
  cuda_gemm.cc cuda_gemm_internal.h cuda_gemm_launch.h cuda_gemm_device.h cuda_gemm_kernels.cu
  cuda_quant.cc cuda_quant_launch.h cuda_quant_kernels.cu cuda_quant_int8.cu
  cuda_lora.cc cuda_lora_launch.h cuda_lora_kernels.cu)
