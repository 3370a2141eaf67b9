// emu stand-in for CUDA's <cuda_fp16.h>: __half and its functions live in cuda_emu.h.
#pragma once
