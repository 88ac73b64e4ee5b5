// Larq Compute Engine's aarch64 binary GEMM kernel, 4x4 tile with int32 accumulators:
// the inner loop of BinaryKernelNeon4x4 (the RUY_OPT(MAX_STREAMING) loop, label 80), with
// its macros LCE_BMLA, LCE_BMLA_LD_RHS and LCE_BMLA_LD_ALL expanded, as an llvm-mca input.
//
//   source:  github.com/larq/compute-engine, larq_compute_engine/core/bgemm/kernels_aarch64.h
//   commit:  e6860fcfda03a21eef157a181cc2351cef7a22bc (repository HEAD, 2026-05-26;
//            the file last changed in ac3afd2b255840e952a4093a8c8a22edecf1d743, 2020-10-14)
//   license: Apache-2.0 (the LICENSE file of that repository), by the Larq Compute Engine authors
//
// Changes: the macros are expanded by the C preprocessor, unchanged; the inline-asm operands
// %[lhs_ptr] and %[rhs_ptr], which the compiler allocates outside the clobbered x1-x15, are
// written x19 and x20. Nothing else.
//
// One iteration: 8 x LCE_BMLA, each 4 LHS rows (v0-v3 or v8-v11) x 1 RHS column x 128 bits
// (four 32-bit depth words), so 8 x 4 x 128 = 4096 binary MACs (32 cnt .16b x 128 bits). Per
// LCE_BMLA: eor x4, cnt x4, addp x3, uaddlp, uadalp (13 SIMD operations per 512 MACs).
// This is LCE's fallback kernel: it is chosen when the depth may overflow 16-bit accumulators
// (filter_height x filter_width x input_channels >= 2^16); otherwise LCE uses its 8x4 kernel
// (lce_bgemm_8x4_inner_loop.s beside this file). LCE's indirect BGEMM kernels
// (core/indirect_bgemm) are not modelled here.
//
// Measure: ./benchmarks/aarch64/mca.py benchmarks/aarch64/lce_bgemm_inner_loop.s --macs 4096
80:
	ld1 {v4.4s}, [x20], #16
	eor v28.16b, v5.16b, v0.16b
	eor v29.16b, v5.16b, v1.16b
	eor v30.16b, v5.16b, v2.16b
	eor v31.16b, v5.16b, v3.16b
	ld1 {v5.4s}, [x20], #16
	cnt v28.16b, v28.16b
	cnt v29.16b, v29.16b
	cnt v30.16b, v30.16b
	cnt v31.16b, v31.16b
	addp v28.16b, v28.16b, v29.16b
	addp v30.16b, v30.16b, v31.16b
	addp v28.16b, v28.16b, v30.16b
	uaddlp v28.8h, v28.16b
	uadalp v25.4s, v28.8h
	eor v28.16b, v6.16b, v0.16b
	eor v29.16b, v6.16b, v1.16b
	eor v30.16b, v6.16b, v2.16b
	eor v31.16b, v6.16b, v3.16b
	ld1 {v6.4s}, [x20], #16
	cnt v28.16b, v28.16b
	cnt v29.16b, v29.16b
	cnt v30.16b, v30.16b
	cnt v31.16b, v31.16b
	addp v28.16b, v28.16b, v29.16b
	addp v30.16b, v30.16b, v31.16b
	addp v28.16b, v28.16b, v30.16b
	uaddlp v28.8h, v28.16b
	uadalp v26.4s, v28.8h
	eor v28.16b, v7.16b, v0.16b
	eor v29.16b, v7.16b, v1.16b
	eor v30.16b, v7.16b, v2.16b
	eor v31.16b, v7.16b, v3.16b
	ld1 {v7.4s}, [x20], #16
	cnt v28.16b, v28.16b
	cnt v29.16b, v29.16b
	ld1 {v0.4s}, [x19], #16
	cnt v30.16b, v30.16b
	cnt v31.16b, v31.16b
	ld1 {v1.4s}, [x19], #16
	addp v28.16b, v28.16b, v29.16b
	ld1 {v2.4s}, [x19], #16
	addp v30.16b, v30.16b, v31.16b
	addp v28.16b, v28.16b, v30.16b
	uaddlp v28.8h, v28.16b
	uadalp v27.4s, v28.8h
	ld1 {v3.4s}, [x19], #16
	eor v28.16b, v12.16b, v8.16b
	eor v29.16b, v12.16b, v9.16b
	eor v30.16b, v12.16b, v10.16b
	eor v31.16b, v12.16b, v11.16b
	ld1 {v12.4s}, [x20], #16
	cnt v28.16b, v28.16b
	cnt v29.16b, v29.16b
	cnt v30.16b, v30.16b
	cnt v31.16b, v31.16b
	addp v28.16b, v28.16b, v29.16b
	addp v30.16b, v30.16b, v31.16b
	addp v28.16b, v28.16b, v30.16b
	uaddlp v28.8h, v28.16b
	uadalp v24.4s, v28.8h
	eor v28.16b, v13.16b, v8.16b
	eor v29.16b, v13.16b, v9.16b
	eor v30.16b, v13.16b, v10.16b
	eor v31.16b, v13.16b, v11.16b
	ld1 {v13.4s}, [x20], #16
	cnt v28.16b, v28.16b
	cnt v29.16b, v29.16b
	cnt v30.16b, v30.16b
	cnt v31.16b, v31.16b
	addp v28.16b, v28.16b, v29.16b
	addp v30.16b, v30.16b, v31.16b
	addp v28.16b, v28.16b, v30.16b
	uaddlp v28.8h, v28.16b
	uadalp v25.4s, v28.8h
	eor v28.16b, v14.16b, v8.16b
	eor v29.16b, v14.16b, v9.16b
	eor v30.16b, v14.16b, v10.16b
	eor v31.16b, v14.16b, v11.16b
	ld1 {v14.4s}, [x20], #16
	cnt v28.16b, v28.16b
	cnt v29.16b, v29.16b
	cnt v30.16b, v30.16b
	cnt v31.16b, v31.16b
	addp v28.16b, v28.16b, v29.16b
	addp v30.16b, v30.16b, v31.16b
	addp v28.16b, v28.16b, v30.16b
	uaddlp v28.8h, v28.16b
	uadalp v26.4s, v28.8h
	eor v28.16b, v15.16b, v8.16b
	eor v29.16b, v15.16b, v9.16b
	eor v30.16b, v15.16b, v10.16b
	eor v31.16b, v15.16b, v11.16b
	ld1 {v15.4s}, [x20], #16
	cnt v28.16b, v28.16b
	cnt v29.16b, v29.16b
	ld1 {v8.4s}, [x19], #16
	cnt v30.16b, v30.16b
	cnt v31.16b, v31.16b
	ld1 {v9.4s}, [x19], #16
	addp v28.16b, v28.16b, v29.16b
	ld1 {v10.4s}, [x19], #16
	addp v30.16b, v30.16b, v31.16b
	addp v28.16b, v28.16b, v30.16b
	uaddlp v28.8h, v28.16b
	uadalp v27.4s, v28.8h
	ld1 {v11.4s}, [x19], #16
	eor v28.16b, v4.16b, v0.16b
	eor v29.16b, v4.16b, v1.16b
	eor v30.16b, v4.16b, v2.16b
	eor v31.16b, v4.16b, v3.16b
	cnt v28.16b, v28.16b
	cnt v29.16b, v29.16b
	cnt v30.16b, v30.16b
	cnt v31.16b, v31.16b
	addp v28.16b, v28.16b, v29.16b
	addp v30.16b, v30.16b, v31.16b
	addp v28.16b, v28.16b, v30.16b
	uaddlp v28.8h, v28.16b
	uadalp v24.4s, v28.8h
	add w1, w1, #8
	cmp w1, w2
	blt 80b
