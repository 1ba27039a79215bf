/* Batched image warps (see image.h). Serial: a batch of MNIST images takes well under a
 * millisecond, less than handing it to threads would save. */
#include "image.h"

#define T float
#define PFX(name) name##_s
#include "image_impl.inc"
#undef T
#undef PFX

#define T double
#define PFX(name) name##_d
#include "image_impl.inc"
#undef T
#undef PFX
