/* Batched image warps (see image.h). Serial: a batch of MNIST images takes well under a
 * millisecond, less than handing it to threads would save. */
#include "image.h"

#include "dtype.h"

#define T float
#define TS s
#include "image_impl.inc"

#define T double
#define TS d
#include "image_impl.inc"
