// emu: __nv_bfloat16 is not emulated; say so instead of failing later on a missing type.
#error "the gputrack emu backend does not support <cuda_bf16.h> (__nv_bfloat16)"
