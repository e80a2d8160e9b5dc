// The fast path's own CUDA kernels (see src/layers/nvrtc_kernels.rs): compiled to PTX by the build
// machine's nvcc with the `cuda` feature (build.rs) and, as a fallback, by NVRTC at run time.
// Element-wise, grid-stride loops with 64-bit indices; the launcher never launches an empty grid.
extern "C" __global__ void leaky_relu_forward(
    const float* x, float* y, const float slope, const unsigned long long n) {
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)blockDim.x * gridDim.x) {
        const float v = x[i];
        // slope 0 is ReLU: 0 for x <= 0 (also for -inf, where v * 0 would be NaN), NaN kept
        y[i] = slope == 0.0f ? (v <= 0.0f ? 0.0f : v) : (v > 0.0f ? v : v * slope);
    }
}

extern "C" __global__ void leaky_relu_backward(
    const float* x, const float* dy, float* dx, const float slope, const unsigned long long n) {
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)blockDim.x * gridDim.x) {
        const float v = x[i];
        dx[i] = slope == 0.0f ? (v <= 0.0f ? 0.0f : dy[i]) : (v > 0.0f ? dy[i] : dy[i] * slope);
    }
}

// p = [mean (c), deviation (c), gamma (c), beta (c)]; NCHW with `planes` = h·w
extern "C" __global__ void channel_normalise(
    const float* x, const float* p, float* y, const unsigned int channels,
    const unsigned int planes, const unsigned long long n) {
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)blockDim.x * gridDim.x) {
        const unsigned long long c = (i / planes) % channels;
        y[i] = __fadd_rn(__fmul_rn(__fdiv_rn(__fsub_rn(x[i], p[c]), p[channels + c]),
                                   p[2 * channels + c]), p[3 * channels + c]);
    }
}

// x·s as candle's affine kernel computes it: x·s + 0, which nvcc contracts to one fused
// multiply-add (the same value; a negative product that underflows stays −0, where the CPU's
// separate add makes it +0)
__device__ float scaled(const float x, const float s) { return __fmaf_rn(x, s, 0.0f); }

// d = g + w·λ, or g
__device__ float decayed(const float g, const float w, const float wd, const unsigned int decays) {
    return decays ? __fadd_rn(g, scaled(w, wd)) : g;
}

// b ← d (first step) or b·μ + d, in place
extern "C" __global__ void sgd_momentum_buffer(
    float* b, const float* g, const float* w, const float momentum, const float wd,
    const unsigned int decays, const unsigned int first, const unsigned long long n) {
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)blockDim.x * gridDim.x) {
        const float d = decayed(g[i], w[i], wd, decays);
        b[i] = first ? d : __fadd_rn(scaled(b[i], momentum), d);
    }
}

// w ← w − η·s; step 0: s = d, 1: s = b (heavy ball), 2: s = d + b·μ (Nesterov)
extern "C" __global__ void sgd_weight(
    float* w, const float* g, const float* b, const float lr, const float momentum, const float wd,
    const unsigned int decays, const unsigned int step, const unsigned long long n) {
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)blockDim.x * gridDim.x) {
        const float v = w[i];
        const float s = step == 1 ? b[i]
            : (step == 2 ? __fadd_rn(decayed(g[i], v, wd, decays), scaled(b[i], momentum))
                         : decayed(g[i], v, wd, decays));
        w[i] = __fsub_rn(v, scaled(s, lr));
    }
}
