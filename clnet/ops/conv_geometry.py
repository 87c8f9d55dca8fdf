"""A convolution's shapes (`Geometry`) and what follows from them alone: PyTorch's output size,
the padded images conv_direct reads, and 1x1 convolutions seen as images of one row."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

MAX_TILE_COLUMNS = 64  # the widest tile clnet's GEMM uses (what a packed column matrix is padded to)


@dataclass(frozen=True)
class Geometry:
    """One convolution's shapes: input (channels, height, width), filters (out_channels,
    channels / groups, kh, kw), stride, padding before (top, left), dilation, and the output."""

    channels: int
    height: int
    width: int
    out_channels: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int
    groups: int
    out_h: int
    out_w: int

    @property
    def pixels(self) -> int:
        return self.out_h * self.out_w

    @property
    def rows(self) -> int:
        """Rows of the column matrix: one per weight of a filter, for every group."""
        return self.channels * self.kh * self.kw

    def arguments(self, samples: int) -> dict:
        return {"channels": self.channels, "height": self.height, "width": self.width, "kh": self.kh, "kw": self.kw,
                "sh": self.sh, "sw": self.sw, "ph": self.ph, "pw": self.pw, "dh": self.dh, "dw": self.dw,
                "out_h": self.out_h, "out_w": self.out_w, "samples": samples}

    def transposed(self) -> Geometry | None:
        """The stride-1 convolution of dz that gives dx (filters flipped, channels swapped), where
        there is one: stride and dilation 1, and padding at most kernel - 1 on each side."""
        total_h, total_w = self._total_padding()
        if (self.sh, self.sw, self.dh, self.dw) != (1, 1, 1, 1) or max(self.ph, total_h - self.ph) > self.kh - 1 \
                or max(self.pw, total_w - self.pw) > self.kw - 1:
            return None
        return Geometry(self.out_channels, self.out_h, self.out_w, self.channels, self.kh, self.kw, 1, 1,
                        self.kh - 1 - self.ph, self.kw - 1 - self.pw, 1, 1, self.groups, self.height, self.width)

    def _total_padding(self) -> tuple[int, int]:
        """Both sides' padding, from the output size (what the padding after the image is)."""
        return ((self.out_h - 1) * self.sh + self.dh * (self.kh - 1) + 1 - self.height,
                (self.out_w - 1) * self.sw + self.dw * (self.kw - 1) + 1 - self.width)


def flat(geometry: Geometry) -> Geometry:
    """A 1x1 convolution of stride 1 without padding as one of images of a single row (height 1,
    width height * width): the same sums, on rows that fill conv_direct's tiles (an 8x8 image is 64
    pixels in 4 whole tiles of 16, not 8 rows of 8 in 8 tiles) and read in place where they are
    whole tiles (no padded copy). Any other geometry as it is."""
    g = geometry
    if (g.kh, g.kw, g.sh, g.sw, g.ph, g.pw) != (1, 1, 1, 1, 0, 0) or (g.out_h, g.out_w) != (g.height, g.width) \
            or g.height == 1:
        return g
    return dataclasses.replace(g, height=1, width=g.pixels, out_h=1, out_w=g.pixels)


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """PyTorch's: floor((size + padding - dilation * (kernel - 1) - 1) / stride) + 1, padding
    being the total of both sides."""
    return (size + padding - dilation * (kernel - 1) - 1) // stride + 1


def padded_size(geometry: Geometry, tile_cols: int = MAX_TILE_COLUMNS) -> tuple[int, int]:
    """(height, width) of an image zero-padded for conv_direct with tiles of tile_cols output
    columns: both sides' padding, and the columns that the last tile of a row reads past them
    (the most for the widest tile: what the workspace is sized for)."""
    total_h, _ = geometry._total_padding()
    return geometry.height + total_h, -(-geometry.out_w // tile_cols) * tile_cols + geometry.dw * (geometry.kw - 1)
