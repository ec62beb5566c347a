# Sources of the elementwise group: CudaBackend (cuda_backend.h), the metadata stager
# (cuda_stager.h), and Convert, Embedding, norms, RoPE, activations, GatherRows
# (cuda_elementwise.cc validates and stages; cuda_elementwise.cu holds the kernels behind the
# plain launcher header cuda_elementwise_launch.h).
set(KILN_CUDA_ELEMENTWISE_SRCS
  cuda_backend.cc cuda_backend.h
  cuda_stager.cc cuda_stager.h
  cuda_elementwise.cc cuda_elementwise.cu cuda_elementwise_launch.h)
