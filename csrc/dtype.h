/* The one naming rule of the dtype templates (the .inc files included once per dtype).
 *
 * The includer defines T (float or double) and TS (s or d), then includes the template;
 * inside it, TNAME(f) is f_s or f_d. Every template #undefs T and TS, and whatever else it
 * defines, at its end, so the next include starts clean. */
#ifndef NNFAST_DTYPE_H
#define NNFAST_DTYPE_H

#define NNF_TNAME2_(f, suf) f##_##suf
#define NNF_TNAME1_(f, suf) NNF_TNAME2_(f, suf)
#define TNAME(f) NNF_TNAME1_(f, TS)

#endif
