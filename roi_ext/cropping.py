"""Cropping1D/2D/3D with Keras 3 semantics (SPEC.md Part B §6, Part A14).

The cropping argument is normalised exactly as Keras does, with Keras's
ValueErrors; the result is a view of the input (``Tensor.narrow`` per spatial
axis: no copy, O(1) whatever the size), so autograd, ``torch.compile`` and
``torch.jit.script`` (of the modules) work through it. Default layout is
``channels_first`` (PyTorch's), unlike Keras's ``channels_last``.
"""
from typing import Any, Dict, List, Tuple

from torch import Tensor, nn

__all__ = ["cropping1d", "cropping2d", "cropping3d", "Cropping1D", "Cropping2D", "Cropping3D"]

_ORDINALS = ("1st", "2nd", "3rd")


def _standardize_tuple(value, n: int, name: str) -> Tuple[int, ...]:
    """Keras's argument_validation.standardize_tuple(value, n, name, allow_zero=True)."""
    error_msg = f"The `{name}` argument must be a tuple of {n} integers. Received {name}={value}"
    if isinstance(value, int):
        value_tuple = (value,) * n
    else:
        try:
            value_tuple = tuple(value)
        except TypeError:
            raise ValueError(error_msg) from None
        if len(value_tuple) != n:
            raise ValueError(error_msg)
        for single_value in value_tuple:
            # Stricter than Keras 3.15, which lets 1.5 through here and fails
            # later, when slicing, with a TypeError (issue: reject non-integers).
            if not isinstance(single_value, int):
                raise ValueError(error_msg + f"including element {single_value} of type {type(single_value)}")
    negative = {v for v in value_tuple if v < 0}
    if negative:
        raise ValueError(error_msg + f", including values {negative} that do not satisfy `value >= 0`")
    return tuple(int(v) for v in value_tuple)  # Keras accepts bools as ints


def _normalize(cropping, rank: int) -> Tuple[Tuple[int, int], ...]:
    """Keras's Cropping{rank}D.__init__ normalisation to `rank` (begin, end) pairs."""
    if rank == 1:
        return (_standardize_tuple(cropping, 2, "cropping"),)  # type: ignore[return-value]
    if isinstance(cropping, int):
        if cropping < 0:
            raise ValueError(f"`cropping` cannot be negative. Received: cropping={cropping}.")
        return ((int(cropping), int(cropping)),) * rank
    if hasattr(cropping, "__len__"):
        if len(cropping) != rank:
            if rank == 2:
                raise ValueError(f"`cropping` should have two elements. Received: cropping={cropping}.")
            raise ValueError(f"`cropping` should have {rank} elements. Received: {cropping}.")
        return tuple(  # type: ignore[return-value]
            _standardize_tuple(cropping[i], 2, f"{_ORDINALS[i]} entry of cropping") for i in range(rank)
        )
    if rank == 2:
        raise ValueError(
            "`cropping` should be either an int, a tuple of 2 ints (symmetric_height_crop, "
            "symmetric_width_crop), or a tuple of 2 tuples of 2 ints ((top_crop, bottom_crop), "
            f"(left_crop, right_crop)). Received: cropping={cropping}."
        )
    raise ValueError(
        "`cropping` should be either an int, a tuple of 3 ints (symmetric_dim1_crop, symmetric_dim2_crop, "
        "symmetric_dim3_crop), or a tuple of 3 tuples of 2 ints ((left_dim1_crop, right_dim1_crop), "
        "(left_dim2_crop, right_dim2_crop), (left_dim3_crop, right_dim2_crop)). "
        f"Received: {cropping}."
    )


def _standardize_data_format(data_format) -> str:
    if data_format is None:
        return "channels_first"
    value = str(data_format).lower()
    if value not in ("channels_first", "channels_last"):
        raise ValueError(
            "The `data_format` argument must be one of {'channels_first', 'channels_last'}. "
            f"Received: data_format={value}"
        )
    return value


def _fmt_ints(values: List[int]) -> str:
    return "(" + ", ".join([str(v) for v in values]) + ("," if len(values) == 1 else "") + ")"


def _fmt_pairs(pairs: List[Tuple[int, int]]) -> str:
    if len(pairs) == 1:  # Cropping1D reports its pair
        return _fmt_ints([pairs[0][0], pairs[0][1]])
    return "(" + ", ".join([_fmt_ints([a, b]) for a, b in pairs]) + ")"


def _crop(x: Tensor, pairs: List[Tuple[int, int]], channels_last: bool, layer: str) -> Tensor:
    """Narrows each spatial axis of x by its (begin, end) pair; a view of x."""
    ndim = len(pairs) + 2
    if x.dim() != ndim:
        raise ValueError(
            f"Input 0 of layer \"{layer}\" is incompatible with the layer: expected ndim={ndim}, "
            f"found ndim={x.dim()}. Full shape received: {_fmt_ints(x.shape)}"
        )
    first = 1 if channels_last else 2
    for i in range(len(pairs)):
        a, b = pairs[i]
        if a + b >= x.size(first + i):
            if len(pairs) == 1:
                raise ValueError(
                    f"`cropping` parameter of `Cropping1D` layer must be smaller than the input length. "
                    f"Received: inputs.shape={_fmt_ints(x.shape)}, cropping={_fmt_pairs(pairs)}"
                )
            raise ValueError(
                "Values in `cropping` argument should be smaller than the corresponding spatial dimension "
                f"of the input. Received: inputs.shape={_fmt_ints(x.shape)}, cropping={_fmt_pairs(pairs)}"
            )
    out = x
    for i in range(len(pairs)):
        a, b = pairs[i]
        out = out.narrow(first + i, a, out.size(first + i) - a - b)
    return out


def _check_tensor(x, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: x must be a Tensor, got {type(x).__name__}")


def cropping1d(x: Tensor, cropping=(1, 1), data_format: str = "channels_first") -> Tensor:
    """Crops the length axis of ``x``: Keras ``Cropping1D``.

    ``x`` is ``[B, C, L]`` (``channels_first``, default) or ``[B, L, C]``
    (``channels_last``, Keras's layout). ``cropping`` is an int or a pair
    ``(begin, end)``. Returns a view ``[B, C, L - begin - end]``.

    Example:
        >>> cropping1d(torch.arange(10.0).reshape(1, 1, 10), (2, 3))
        tensor([[[2., 3., 4., 5., 6.]]])
    """
    _check_tensor(x, "cropping1d")
    pairs = list(_normalize(cropping, 1))
    return _crop(x, pairs, _standardize_data_format(data_format) == "channels_last", "cropping1d")


def cropping2d(x: Tensor, cropping=((0, 0), (0, 0)), data_format: str = "channels_first") -> Tensor:
    """Crops the height and width axes of ``x``: Keras ``Cropping2D``.

    ``x`` is ``[B, C, H, W]`` (``channels_first``, default) or ``[B, H, W, C]``
    (``channels_last``). ``cropping``: int, ``(sym_h, sym_w)`` or
    ``((top, bottom), (left, right))``. Returns a view of ``x``.

    Example:
        >>> x = torch.zeros(2, 28, 28, 3)
        >>> cropping2d(x, ((2, 2), (4, 4)), data_format="channels_last").shape
        torch.Size([2, 24, 20, 3])
    """
    _check_tensor(x, "cropping2d")
    pairs = list(_normalize(cropping, 2))
    return _crop(x, pairs, _standardize_data_format(data_format) == "channels_last", "cropping2d")


def cropping3d(x: Tensor, cropping=((1, 1), (1, 1), (1, 1)), data_format: str = "channels_first") -> Tensor:
    """Crops the three spatial axes of ``x``: Keras ``Cropping3D``.

    ``x`` is ``[B, C, D, H, W]`` (``channels_first``, default) or
    ``[B, D, H, W, C]`` (``channels_last``). ``cropping``: int, 3 ints or 3 pairs.
    Returns a view of ``x``.

    Example:
        >>> cropping3d(torch.zeros(1, 2, 6, 6, 6), (1, 2, 0)).shape
        torch.Size([1, 2, 4, 2, 6])
    """
    _check_tensor(x, "cropping3d")
    pairs = list(_normalize(cropping, 3))
    return _crop(x, pairs, _standardize_data_format(data_format) == "channels_last", "cropping3d")


class _Cropping(nn.Module):
    _pairs: List[Tuple[int, int]]
    _channels_last: bool
    _layer: str

    def __init__(self, cropping, data_format, rank: int):
        super().__init__()
        self.cropping = _normalize(cropping, rank) if rank > 1 else _normalize(cropping, 1)[0]
        self.data_format = _standardize_data_format(data_format)
        self._pairs = list(_normalize(cropping, rank))
        self._channels_last = self.data_format == "channels_last"
        self._layer = type(self).__name__.lower()

    def forward(self, x: Tensor) -> Tensor:
        return _crop(x, self._pairs, self._channels_last, self._layer)

    def get_config(self) -> Dict[str, Any]:
        """The normalised arguments, as Keras's ``get_config()`` reports them."""
        return {"cropping": self.cropping, "data_format": self.data_format}

    def extra_repr(self) -> str:
        return f"cropping={self.cropping}, data_format={self.data_format!r}"


class Cropping1D(_Cropping):
    """Keras ``Cropping1D``: ``Cropping1D(cropping=(1, 1), data_format="channels_first")``.

    Example:
        >>> Cropping1D((2, 3))(torch.zeros(4, 8, 10)).shape
        torch.Size([4, 8, 5])
    """

    def __init__(self, cropping=(1, 1), data_format: str = "channels_first"):
        super().__init__(cropping, data_format, 1)


class Cropping2D(_Cropping):
    """Keras ``Cropping2D``: ``Cropping2D(cropping=((0, 0), (0, 0)), data_format="channels_first")``.

    Example:
        >>> Cropping2D(((2, 2), (4, 4)), data_format="channels_last")(torch.zeros(2, 28, 28, 3)).shape
        torch.Size([2, 24, 20, 3])
    """

    def __init__(self, cropping=((0, 0), (0, 0)), data_format: str = "channels_first"):
        super().__init__(cropping, data_format, 2)


class Cropping3D(_Cropping):
    """Keras ``Cropping3D``: ``Cropping3D(cropping=((1, 1), (1, 1), (1, 1)), data_format="channels_first")``.

    Example:
        >>> Cropping3D(1)(torch.zeros(1, 2, 5, 6, 7)).shape
        torch.Size([1, 2, 3, 4, 5])
    """

    def __init__(self, cropping=((1, 1), (1, 1), (1, 1)), data_format: str = "channels_first"):
        super().__init__(cropping, data_format, 3)
