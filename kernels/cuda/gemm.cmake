# Sources of the gemm group (cuBLASLt GEMM, GEMV, quantized matmuls, LoRA SGMV).
set(KILN_CUDA_GEMM_SRCS cuda_gemm.cc)
