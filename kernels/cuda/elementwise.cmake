# Sources of the elementwise group (CudaBackend, stager, norms, RoPE, activations, KV write).
set(KILN_CUDA_ELEMENTWISE_SRCS)
