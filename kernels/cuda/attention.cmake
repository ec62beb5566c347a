# Sources of the attention group (paged prefill and decode attention, KV scatter).
set(KILN_CUDA_ATTENTION_SRCS cuda_attention.cc cuda_attention_launch.h cuda_attention_kernels.cu
  cuda_attention_plan.cc cuda_attention_plan.h)
