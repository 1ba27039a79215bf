"""Conv2d (direct or GEMM), MaxPool2d, AvgPool2d, AdaptiveAvgPool2d and BatchNorm2d on NCHW.

A convolution whose receptive field is small (C*KH*KW <= ``DIRECT_MAX_K``, e.g. a first layer
on 1-channel images) runs a direct C kernel (csrc/conv_kernel_impl.inc), one call per layer:
each image is copied once per kernel column, shifted, into the thread's cache, where every
tap's values for all the output pixels are one run, and the products run with vectors along
the pixels, several output channels per load (the input gradient lays out a band's windows'
gradients tap-major and adds them back). Bias and ReLU are fused in the forward; ReLU's
derivative and the bias gradient in the backward's own pass over dY. There the GEMM would be
degenerate (K = 9 or 25). A stride or padding far past the kernel, which would make that copy
far larger than the image, takes the GEMM path (conv.h's nnf_conv_direct_fits).

Other convolutions are GEMMs in one C call per layer (csrc/conv_gemm_impl.inc): the batch is
cut into groups of images of about 512 output pixels, whose columns (C*KH*KW x pixels) then
fit in L2 for MNIST-sized layers (a group is at least one image, however large), and each group
is unfolded, multiplied and, in backward, folded back while it is in cache, a thread per group
(a batch of fewer groups than threads runs them in turn, each GEMM on all threads):
``Y^T = cols^T @ W^T`` with bias and activation in the GEMM's epilogue;
``dW^T += cols @ dY^T``, ``dcols = W^T @ dY``, ``dx = fold(dcols)``. No column matrix of the
whole batch is ever written. With ``nnfast.set_matmul_precision("bf16")`` these GEMMs run in
bf16 with float32 accumulation. In float32 and float64, stride-1 layers whose C_out is a
multiple of the vector lanes (16 float32 values with AVX-512) and whose output rows are at
least 4 wide (LeNet-5's second layer) write no columns: their forward product and weight
gradient read the image in place (csrc/conv_implicit_kernel.inc, vectors along the output
channels, each multiply broadcasting one input pixel), a thread per group of images (not 1x1
layers, nor batches of fewer images than the threads the call is worth, which the GEMMs
thread within an image). Their input gradient comes from the direct kernel for small K (on
AVX-512 with rows of at most 8 outputs, a dx row at a time in registers), else from the GEMM
and fold.

Among those, float32 3x3 convolutions of stride 1 and dilation 1 (any padding) with at least 8
input channels (fewer make its GEMMs too shallow to pay) run as Winograd F(2x2, 3x3) in the
same C call (csrc/conv_winograd_impl.inc): each 2x2 block of outputs takes 16 multiplies per
channel pair instead of 36, as 16 GEMMs over channels between transformed 4x4 input tiles and
transformed kernels (in bf16 too); the weight gradient is 16 long-K GEMMs of transformed tiles,
and the input gradient 16 GEMMs of the same transformed dY with the transformed kernels, taken
back to pixels by the input transform's transpose. Its error
is about that of the direct sum in float32 (an output of few products beside large ones keeps
some of their rounding) and about 2.5 times the GEMM path's in bf16
(tests/test_conv_winograd.py); since its transforms take differences of pixels, an infinite
input gives NaN rather than +-inf in the outputs that read it. float64 convolutions stay on
the GEMM path.

A ReLU (or no activation) and a following ``MaxPool2d`` fuse into either path: inside a
``Sequential`` the pair runs as one C call that pools each image's (or group's) output in the
worker's cache, writing only the pooled output and the pool's argmax. Its backward
(``Conv2d.backward_fused``) masks the pooled gradient by ReLU's derivative at the argmax (the
pooled output > 0), sums the bias gradient from it, and hands it to the convolution's
backward kernels with the argmax: each group's (direct kernels: each band's) output gradient
is the scatter of it, built in the worker's cache, on the GEMM path and Winograd (straight
into its NHWC layout) alike. Called apart, the two modules' own backwards do the same in two
steps through a full-size gradient.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _convops as ops
from .. import _gemm
from .. import functional as F
from .._random import generator
from . import init
from .activation import activation_module
from .layers import _BatchNorm, _with_activation
from .module import (
    Module,
    Parameter,
    TorchModule,
    _float_dtype,
    real_array,
    register,
    runs_own_forward,
    weight_and_bias,
)

#: Convolutions with C_in*KH*KW up to this run the direct kernel (measured at batch 128, 2
#: threads, forward + backward: LeNet-5's and cnn_small's first layers, K = 25 and 9, take 0.25x
#: and 0.47x the GEMM path's time; their second layers, K = 150 and 288, about 1.25x; between,
#: 8 -> 32 3x3 and 3 -> 16 5x5, K = 72 and 75, 0.9x and 0.75x: a higher limit would pay for
#: such layers, but no model here has one and the crossover was not mapped across channel
#: counts). 0 sends every one to the GEMMs.
DIRECT_MAX_K = 32

#: A Conv2d with no activation or ReLU followed by a MaxPool2d in a Sequential runs both in one
#: pass (Conv2d.forward_fused): the convolution's output is pooled in the thread's cache and
#: never written out; so does their backward (Conv2d.backward_fused): the output's gradient is
#: built from the pooled one a group of images at a time, in cache. False runs them one after
#: the other (for comparisons; the outputs and the weight and input gradients are the same to
#: the bit either way, the bias gradient up to the order of its sum).
FUSE_POOL = True


def _check_nchw_shape(layer, shape, channels):
    """ValueError naming the layer unless ``shape`` (None entries unknown) is (N, C, H, W) with
    ``channels`` channels (None: any)."""
    shape = tuple(shape)
    if len(shape) != 4:
        raise ValueError(f"{layer!r}: expected a 4-D (N, C, H, W) input, got shape {shape}")
    if channels is not None and shape[1] is not None and shape[1] != channels:
        raise ValueError(
            f"{layer!r}: expected {channels} input channels, got shape {shape} "
            f"({shape[1]} channels)"
        )


def _check_nchw(layer, x, channels):
    x = real_array(layer, x)
    _check_nchw_shape(layer, x.shape, channels)
    return x


@register
class Conv2d(Module):
    """2-D convolution of (N, C_in, H, W) into (N, C_out, Ho, Wo), ``act(conv(x) + b)``.

    Parameters follow ``torch.nn.Conv2d``: ``kernel_size``, ``stride``, ``padding`` and
    ``dilation`` are ints or (h, w) pairs; ``activation`` names an activation fused after the
    bias (``"relu"``...). The weight is (C_out, C_in, KH, KW), initialised as in torch
    (Kaiming-uniform with a = sqrt(5); bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))). A layer
    with C_in*KH*KW <= ``DIRECT_MAX_K`` runs a direct kernel, others (and 1x1 convolutions)
    GEMMs on groups of images, or Winograd F(2x2, 3x3) for float32 3x3 kernels of stride 1 and
    dilation 1 on 8 or more channels (float64 stays on the GEMMs); see the module's docstring.

    In ``eval()`` mode, ``forward`` may run in several threads at once (each call's scratch is
    its own); training (forward, then backward) uses one thread per layer. In a Sequential, a
    following MaxPool2d fuses into the forward and the backward (see ``forward_fused``).
    """

    can_skip_input_grad = True

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        bias=True,
        activation=None,
        *,
        dtype="float32",
        seed=None,
    ):
        super().__init__()
        self.in_channels = ops.whole(in_channels, "in_channels", 1, "Conv2d")
        self.out_channels = ops.whole(out_channels, "out_channels", 1, "Conv2d")
        self.geom = ops.geometry(kernel_size, stride, padding, dilation, "Conv2d")
        kh, kw, sh, sw, ph, pw, dh, dw = self.geom
        self.kernel_size, self.stride = (kh, kw), (sh, sw)
        self.padding, self.dilation = (ph, pw), (dh, dw)
        dtype = _float_dtype(dtype)
        rng = generator(seed)
        w = np.empty((self.out_channels, self.in_channels, kh, kw), dtype)
        self.weight = Parameter(init.kaiming_uniform_(w, a=math.sqrt(5), rng=rng))
        if bias:
            bound = 1.0 / math.sqrt(self.in_channels * kh * kw)
            self.bias = Parameter(rng.uniform(-bound, bound, self.out_channels).astype(dtype))
        else:
            self.bias = None
        if activation is not None and not isinstance(activation, str):
            # a module instance ran, but could not be saved (not JSON) or exported
            raise TypeError(
                f"Conv2d: activation must be a name such as 'relu' or 'prelu', got "
                f"{type(activation).__name__}; or put the module after the layer"
            )
        self.activation = activation
        # an activation whose derivative comes from its output runs in the GEMM epilogue and
        # in one fused backward pass with the bias gradient; others run as a module
        entry = F.ACTIVATION_FUNCTIONS.get(activation) if isinstance(activation, str) else None
        self._fused = activation is None or (entry is not None and entry.from_output)
        self._act = None if self._fused else activation_module(activation)
        if self._act is not None:  # PReLU's slope in the layer's dtype (it was float32)
            self._act.astype(dtype)
        self._y = None
        self._pointwise = (kh, kw, sh, sw, ph, pw, dh, dw) == (1, 1, 1, 1, 0, 0, 1, 1)
        self._direct = False  # the path the last forward took (backward takes the same)
        self._pooled = False  # the last forward fused a MaxPool2d (which applied ReLU')
        self._pooling = None  # then (that MaxPool2d, its argmax, its output if ReLU came first)
        self._bf16 = False  # the precision the last forward's GEMMs took (backward's too)
        self._x = None

    # --- forward / backward --------------------------------------------------------------------
    def forward(self, x):
        """x (N, C_in, H, W) -> (N, C_out, Ho, Wo)."""
        return self._forward(x, None)

    def forward_fused(self, x, following):
        """``following(self(x))`` in one pass where ``following`` is a MaxPool2d and this layer
        has no activation or ReLU (and ``FUSE_POOL`` is on), else None: the output is pooled
        in the worker's cache. Both modules keep what their backward needs: the pool's
        backward applies ReLU's derivative, and this layer's backward then takes its gradient
        as it comes. Results equal the unfused ones to the bit, ties and NaN included."""
        return self._forward(x, following) if self.fuses_with(following) else None

    def fuses_with(self, following):
        """True if ``forward_fused(x, following)`` runs fused (see there)."""
        return (FUSE_POOL and isinstance(following, MaxPool2d) and self._act is None
                and self.activation in (None, "relu") and runs_own_forward(self, Conv2d)
                and runs_own_forward(following, MaxPool2d))  # fmt: skip

    def _forward(self, x, pool):
        x = _check_nchw(self, x, self.in_channels)
        w, bias = weight_and_bias(self)
        if x.dtype != w.dtype:
            x = x.astype(w.dtype)
        x = np.ascontiguousarray(x)
        n, _, h, wd = x.shape
        ho, wo = ops.output_shape(h, wd, self.geom, self)
        shape = (n, self.out_channels, ho, wo)
        pooling = ()
        if pool is not None:  # y is the pooled output, argmax the pool's
            hp, wp = ops.output_shape(ho, wo, pool.geom, pool)
            y = ops.empty((n, self.out_channels, hp, wp), w.dtype, self, x.shape)
            pooling = (pool.geom, np.empty(y.shape, np.int32))
        else:
            y = ops.empty(shape, w.dtype, self, x.shape)
        act = self.activation if (self._fused and self.activation) else None
        k = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        kernels = ops._core("Conv2d")
        self._direct = (k <= DIRECT_MAX_K and not self._pointwise  # a 1x1 reads x in place
                        and kernels.conv_direct_fits(h, wd, ho, wo, self.geom))  # fmt: skip
        self._bf16 = w.dtype == np.float32 and _gemm.get_matmul_precision() == "bf16"
        if not self._direct:  # any fused activation runs in the GEMM's epilogue
            act_id, param = _gemm._common_act(act)
            kernels.conv2d_gemm(x, w, bias, self.geom, act_id, param, self._bf16, y, *pooling)
        else:
            kernels.conv2d_direct(x, w, bias, self.geom, act == "relu", y, *pooling)
            if act not in (None, "relu"):  # the direct kernel fuses ReLU only
                F.bias_act(y, None, act, out=y)
        self._x = x
        if self._act is not None:
            y = self._act.forward(y)
        self._pooled = pool is not None
        self._y = y if self._fused and not self._pooled else None
        self._pooling = None
        if pool is not None:
            relu_of = y if act == "relu" else None
            self._pooling = (pool, pooling[1], relu_of)
            pool._fused_forward(shape, y, pooling[1], relu_of)
        return y

    def ran_fused(self, following):
        """True if the last forward was ``forward_fused(x, following)`` and ran fused."""
        return self._pooling is not None and self._pooling[0] is following

    def backward_fused(self, grad_out, following, input_grad=True):
        """``self.backward(following.backward(grad_out))`` in one pass, after a forward that
        ``ran_fused(following)``: grad_out is the pooling's (N, C_out, Hp, Wp), and the
        convolution's output gradient (the pooled one scattered at the argmax, times ReLU's
        derivative) is built a group of images (or a band of pixels) at a time in the
        thread's cache, never as an array of the output's size. dx and the weight gradient
        equal the two backward passes' to the bit; the bias gradient, summed over the pooled
        gradient, equals theirs up to the order of the sum."""
        if not self.ran_fused(following):
            raise RuntimeError(f"{self!r}: backward_fused after a forward not fused with it")
        pool, argmax, relu_of = self._pooling
        dy = np.asarray(pool._dy(grad_out), dtype=self.weight.dtype)
        want_db = self.bias is not None
        # ReLU's derivative and the bias gradient in one pass over the pooled gradient
        act, u = ("identity", dy) if relu_of is None else ("relu", relu_of)
        dy, db = F.bias_act_backward(dy, u, act, bias_grad=want_db)
        dx = self._backward_products(np.ascontiguousarray(dy), input_grad, None,
                                     (pool.geom, argmax))  # fmt: skip
        if want_db:  # last: a kernel that raised leaves the bias gradient as it was
            self.bias.grad += db
        return dx

    def backward(self, grad_out, input_grad=True):
        """grad_out (N, C_out, Ho, Wo) -> dx (N, C_in, H, W) (assigned); weight.grad and
        bias.grad are accumulated (+=)."""
        if self._x is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        dy = self._grad_out(grad_out, self.output_shape(self._x.shape), self.weight.dtype)
        # the direct kernels take ReLU's derivative and the bias gradient in their own pass
        in_kernel = self._direct and self._fused and self.activation in (None, "relu")
        # after a fused pooling, the pool's backward has applied ReLU's derivative
        act = "identity" if self._pooled else self.activation or "identity"
        if self._fused and not in_kernel:  # dy * act'(y) and the bias gradient in one pass
            want_db = self.bias is not None
            u = dy if self._pooled else self._y  # identity's derivative reads no u
            dy, db = F.bias_act_backward(dy, u, act, bias_grad=want_db)
            if want_db:
                self.bias.grad += db
        elif not self._fused:
            dy = self._act.backward(dy)
            if self.bias is not None:
                self.bias.grad += dy.sum(axis=(0, 2, 3))
        y = self._y if in_kernel and act == "relu" else None
        db = np.empty_like(self.bias.data) if in_kernel and self.bias is not None else None
        dx = self._backward_products(np.ascontiguousarray(dy), input_grad, y, None, db)
        if db is not None:  # last: a kernel that raised leaves the bias gradient as it was
            self.bias.grad += db
        return dx

    def _backward_products(self, dy, input_grad, y, pooling, db=None):
        """The weight gradient (accumulated) and dx (returned, or None without input_grad)
        for dy, times ReLU's derivative if y (the output) is given, on the path the forward
        took; with pooling (geometry, argmax) dy is that max pooling's gradient; the direct
        kernels also fill db if given."""
        x = self._x
        gw, beta = self.weight.grad_target()  # beta 0: the first product overwrites dW
        dx = np.empty_like(x) if input_grad else None
        if x.shape[0] == 0:  # an empty batch adds nothing (but a pending zero_grad must hold)
            if beta == 0.0:
                gw.fill(0)
            if db is not None:
                db.fill(0)
            return dx
        kernels = ops._core("Conv2d")
        pool = dict(zip(("pool", "argmax"), pooling)) if pooling else {}
        if self._direct:
            kernels.conv2d_direct_backward_weight(x, dy, self.geom, beta == 1.0, gw, y, db, **pool)
            if input_grad:
                kernels.conv2d_direct_backward_input(dy, self.weight.data, self.geom, dx, y,
                                                     **pool)  # fmt: skip
        else:
            kernels.conv2d_gemm_backward(x, dy, self.weight.data, self.geom, beta == 1.0,
                                         self._bf16, gw, dx, **pool)  # fmt: skip
        return dx

    def output_shape(self, input_shape):
        shape = self.pre_activation_shape(input_shape)
        # a module activation may change it (Maxout halves the channels)
        return shape if self._act is None else self._act.output_shape(shape)

    def pre_activation_shape(self, input_shape):
        """The convolution's own output shape, before an activation that runs as a module."""
        if input_shape is None:
            return (None, self.out_channels, None, None)
        _check_nchw_shape(self, input_shape, self.in_channels)
        if None in input_shape[2:]:
            return (input_shape[0], self.out_channels, None, None)
        ho, wo = ops.output_shape(input_shape[2], input_shape[3], self.geom, self)
        return (input_shape[0], self.out_channels, ho, wo)

    @classmethod
    def state_shapes(cls, config):
        c_in = ops.whole(config.get("in_channels"), "in_channels", 1, "Conv2d")
        c_out = ops.whole(config.get("out_channels"), "out_channels", 1, "Conv2d")
        kh, kw = ops.geometry(config.get("kernel_size"), what="Conv2d")[:2]
        shapes = {"weight": (c_out, c_in, kh, kw)}
        if config.get("bias", True):
            shapes["bias"] = (c_out,)
        act = config.get("activation")
        entry = F.ACTIVATION_FUNCTIONS.get(act) if isinstance(act, str) else None
        if act is not None and not (entry is not None and entry.from_output):
            act_shapes = type(activation_module(act)).state_shapes({})
            if act_shapes is None:
                return None
            shapes.update({f"_act.{k}": v for k, v in act_shapes.items()})
        return shapes

    def torch_modules(self):
        kwargs = {"in_channels": self.in_channels, "out_channels": self.out_channels}
        kwargs.update(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding)
        kwargs.update(dilation=self.dilation, bias=self.bias is not None)
        tensors = {"weight": "weight", **({"bias": "bias"} if self.bias is not None else {})}
        conv = TorchModule("Conv2d", kwargs, tensors)
        if self._fused:
            return _with_activation(conv, self.activation)
        return [conv, *(m.prefixed("_act.") for m in self._act.torch_modules())]

    def get_config(self):
        cfg = {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "dilation": list(self.dilation),
        }
        if self.bias is None:
            cfg["bias"] = False
        if self.activation is not None:
            cfg["activation"] = self.activation
        return cfg

    def extra_repr(self):
        kh, kw = self.kernel_size
        s = f"{self.in_channels}, {self.out_channels}, kernel_size=({kh}, {kw})"
        if self.stride != (1, 1):
            s += f", stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.bias is None:
            s += ", bias=False"
        if self.activation is not None:
            s += f", activation={self.activation!r}"
        return s


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1):
        super().__init__()
        self.geom = ops.pool_geometry(kernel_size, stride, padding, dilation, type(self).__name__)
        self.kernel_size, self.stride = self.geom[0:2], self.geom[2:4]
        self.padding, self.dilation = self.geom[4:6], self.geom[6:8]
        self._shape = self._out_shape = None  # the last forward's input and output shapes
        self._dtype = None  # and its output's dtype, which backward's gradient takes

    def _args(self):
        return self.kernel_size, self.stride, self.padding

    def _check(self, x):
        """x as (N, C, H, W) whose padded size fits the window, else ValueError naming self."""
        x = _check_nchw(self, x, None)
        ops.output_shape(x.shape[2], x.shape[3], self.geom, self)
        return x

    def _dy(self, grad_out):
        """grad_out checked against the forward's output shape, else ValueError naming self."""
        if self._shape is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        return self._grad_out(grad_out, self._out_shape, self._dtype)

    def output_shape(self, input_shape):
        if input_shape is None:
            return None
        _check_nchw_shape(self, input_shape, None)
        if None in input_shape[2:]:
            return tuple(input_shape)
        ho, wo = ops.output_shape(input_shape[2], input_shape[3], self.geom, self)
        return (*input_shape[:2], ho, wo)

    @classmethod
    def state_shapes(cls, config):
        return {}

    def get_config(self):
        return {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
        }


@register
class MaxPool2d(_Pool2d):
    """Max pooling of (N, C, H, W); ``stride`` defaults to ``kernel_size``."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1):
        super().__init__(kernel_size, stride, padding, dilation)
        self._relu_of = None  # a fused forward's output where ReLU came before it, else None

    def forward(self, x):
        x = self._check(x)
        y, self._argmax = ops.max_pool2d(x, *self._args(), self.dilation)
        self._shape, self._out_shape, self._dtype, self._relu_of = x.shape, y.shape, y.dtype, None
        return y

    def _fused_forward(self, input_shape, y, argmax, relu_of):
        """The state of a forward that a Conv2d ran fused (Conv2d.forward_fused): the input's
        shape, the output y and its argmax; ``relu_of`` is y if the input went through a ReLU,
        whose derivative backward then applies (> 0 at the argmax is y > 0), else None."""
        self._shape, self._out_shape, self._dtype = input_shape, y.shape, y.dtype
        self._argmax = argmax
        self._relu_of = relu_of

    def backward(self, grad_out):
        dy = self._dy(grad_out)
        if self._relu_of is not None:
            dy = F.relu_backward(dy, self._relu_of)
        return ops.max_pool2d_backward(dy, self._argmax, self._shape, *self._args(), self.dilation)

    def get_config(self):
        return {**super().get_config(), "dilation": list(self.dilation)}

    def torch_modules(self):
        kwargs = dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding)
        return [TorchModule("MaxPool2d", {**kwargs, "dilation": self.dilation}, {})]


@register
class AvgPool2d(_Pool2d):
    """Average pooling of (N, C, H, W), padding counted as zeros (torch's default)."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding, 1)

    def forward(self, x):
        x = self._check(x)
        y = ops.avg_pool2d(x, *self._args())
        self._shape, self._out_shape, self._dtype = x.shape, y.shape, y.dtype
        return y

    def backward(self, grad_out):
        return ops.avg_pool2d_backward(self._dy(grad_out), self._shape, *self._args())

    def torch_modules(self):  # torch's count_include_pad=True: padding counted as zeros
        kwargs = dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding)
        return [TorchModule("AvgPool2d", kwargs, {})]


@register
class AdaptiveAvgPool2d(Module):
    """Global average pooling: (N, C, H, W) -> (N, C, 1, 1). Only ``output_size=1``."""

    def __init__(self, output_size=1):
        super().__init__()
        if output_size not in (1, (1, 1), [1, 1]):
            raise ValueError(
                f"AdaptiveAvgPool2d: only output_size=1 is supported, got {output_size}"
            )
        self.output_size = 1
        self._shape = None

    def forward(self, x):
        x = _check_nchw(self, x, None)
        self._check_plane(x.shape)
        self._shape = x.shape
        return ops.global_avg_pool2d(x)[:, :, None, None]

    def _check_plane(self, shape):
        if 0 in shape[2:]:  # the mean of no pixels: NaN, which no caller wants
            raise ValueError(f"{self!r}: an empty plane ({shape[2]}x{shape[3]}) has no average")

    def backward(self, grad_out):
        if self._shape is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        g = self._grad_out(grad_out, (*self._shape[:2], 1, 1))
        return ops.global_avg_pool2d_backward(g[:, :, 0, 0], self._shape)

    def output_shape(self, input_shape):
        if input_shape is None:
            return None
        _check_nchw_shape(self, input_shape, None)
        self._check_plane(input_shape)
        return (*input_shape[:2], 1, 1)

    def get_config(self):
        return {"output_size": 1}

    @classmethod
    def state_shapes(cls, config):
        return {}

    def torch_modules(self):
        return [TorchModule("AdaptiveAvgPool2d", {"output_size": 1}, {})]


@register
class BatchNorm2d(_BatchNorm):
    """Batch normalisation per channel of (N, C, H, W): statistics over N, H and W (see
    :class:`BatchNorm1d` for the arguments)."""

    def _check_shape(self, shape):
        _check_nchw_shape(self, shape, self.num_features)
