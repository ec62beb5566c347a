# Sources of the attention group (paged prefill and decode attention).
set(KILN_CUDA_ATTENTION_SRCS cuda_attention.cc)
