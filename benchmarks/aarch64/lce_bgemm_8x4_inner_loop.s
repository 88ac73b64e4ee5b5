// Larq Compute Engine's aarch64 binary GEMM kernel, 8x4 tile with int16 accumulators (the
// kernel LCE's optimized BGEMM path uses when 16-bit accumulators cannot overflow): the
// accumulation loop of BinaryKernelNeon8x4 (label 2), with its macros LCE_CNT_ACCUM_LD_RHS_XOR
// and LCE_CNT_ACCUM_LD_ALL_XOR expanded, as an llvm-mca input.
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
// One iteration: 4 x LCE_CNT_ACCUM_*_XOR, each 8 LHS rows (v0-v7) x 1 RHS column (v8-v11) x
// 128 bits, so 4 x 8 x 128 = 4096 binary MACs (32 cnt .16b x 128 bits). Per 1024 MACs:
// eor x8, cnt x8, addp x7, uadalp .8h (24 SIMD operations), 16-bit accumulation.
//
// Measure: ./benchmarks/aarch64/mca.py benchmarks/aarch64/lce_bgemm_8x4_inner_loop.s --macs 4096
2:
	ld1 {v9.4s}, [x20], #16
	cnt v12.16b, v12.16b
	cnt v13.16b, v13.16b
	cnt v14.16b, v14.16b
	cnt v15.16b, v15.16b
	cnt v16.16b, v16.16b
	cnt v17.16b, v17.16b
	cnt v18.16b, v18.16b
	cnt v19.16b, v19.16b
	addp v20.16b, v12.16b, v13.16b
	addp v21.16b, v14.16b, v15.16b
	addp v22.16b, v16.16b, v17.16b
	addp v23.16b, v18.16b, v19.16b
	eor v12.16b, v9.16b, v0.16b
	eor v13.16b, v9.16b, v1.16b
	addp v20.16b, v20.16b, v21.16b
	addp v22.16b, v22.16b, v23.16b
	eor v14.16b, v9.16b, v2.16b
	eor v15.16b, v9.16b, v3.16b
	eor v16.16b, v9.16b, v4.16b
	addp v20.16b, v20.16b, v22.16b
	eor v17.16b, v9.16b, v5.16b
	eor v18.16b, v9.16b, v6.16b
	eor v19.16b, v9.16b, v7.16b
	uadalp v24.8h, v20.16b
	ld1 {v10.4s}, [x20], #16
	cnt v12.16b, v12.16b
	cnt v13.16b, v13.16b
	cnt v14.16b, v14.16b
	cnt v15.16b, v15.16b
	cnt v16.16b, v16.16b
	cnt v17.16b, v17.16b
	cnt v18.16b, v18.16b
	cnt v19.16b, v19.16b
	addp v20.16b, v12.16b, v13.16b
	addp v21.16b, v14.16b, v15.16b
	addp v22.16b, v16.16b, v17.16b
	addp v23.16b, v18.16b, v19.16b
	eor v12.16b, v10.16b, v0.16b
	eor v13.16b, v10.16b, v1.16b
	addp v20.16b, v20.16b, v21.16b
	addp v22.16b, v22.16b, v23.16b
	eor v14.16b, v10.16b, v2.16b
	eor v15.16b, v10.16b, v3.16b
	eor v16.16b, v10.16b, v4.16b
	addp v20.16b, v20.16b, v22.16b
	eor v17.16b, v10.16b, v5.16b
	eor v18.16b, v10.16b, v6.16b
	eor v19.16b, v10.16b, v7.16b
	uadalp v25.8h, v20.16b
	ld1 {v11.4s}, [x20], #16
	cnt v12.16b, v12.16b
	cnt v13.16b, v13.16b
	cnt v14.16b, v14.16b
	cnt v15.16b, v15.16b
	cnt v16.16b, v16.16b
	cnt v17.16b, v17.16b
	cnt v18.16b, v18.16b
	cnt v19.16b, v19.16b
	addp v20.16b, v12.16b, v13.16b
	addp v21.16b, v14.16b, v15.16b
	addp v22.16b, v16.16b, v17.16b
	addp v23.16b, v18.16b, v19.16b
	eor v12.16b, v11.16b, v0.16b
	eor v13.16b, v11.16b, v1.16b
	addp v20.16b, v20.16b, v21.16b
	addp v22.16b, v22.16b, v23.16b
	eor v14.16b, v11.16b, v2.16b
	eor v15.16b, v11.16b, v3.16b
	eor v16.16b, v11.16b, v4.16b
	addp v20.16b, v20.16b, v22.16b
	eor v17.16b, v11.16b, v5.16b
	eor v18.16b, v11.16b, v6.16b
	eor v19.16b, v11.16b, v7.16b
	uadalp v26.8h, v20.16b
	add w1, w1, #4
	cmp w1, w12
	ld1 {v8.4s}, [x20], #16
	cnt v12.16b, v12.16b
	cnt v13.16b, v13.16b
	ld1 {v0.4s, v1.4s, v2.4s, v3.4s}, [x19], #64
	cnt v14.16b, v14.16b
	cnt v15.16b, v15.16b
	cnt v16.16b, v16.16b
	cnt v17.16b, v17.16b
	ld1 {v4.4s, v5.4s, v6.4s, v7.4s}, [x19], #64
	cnt v18.16b, v18.16b
	cnt v19.16b, v19.16b
	addp v20.16b, v12.16b, v13.16b
	addp v21.16b, v14.16b, v15.16b
	addp v22.16b, v16.16b, v17.16b
	addp v23.16b, v18.16b, v19.16b
	eor v12.16b, v8.16b, v0.16b
	eor v13.16b, v8.16b, v1.16b
	addp v20.16b, v20.16b, v21.16b
	addp v22.16b, v22.16b, v23.16b
	eor v14.16b, v8.16b, v2.16b
	eor v15.16b, v8.16b, v3.16b
	eor v16.16b, v8.16b, v4.16b
	addp v20.16b, v20.16b, v22.16b
	eor v17.16b, v8.16b, v5.16b
	eor v18.16b, v8.16b, v6.16b
	eor v19.16b, v8.16b, v7.16b
	uadalp v27.8h, v20.16b
	blt 2b
