"""Rounding error of a 3x3 convolution on bf16 operands: direct, and Winograd F(2x2, 3x3) and F(4x4, 3x3)
with their transformed operands rounded to bf16 (transforms in fp32, products summed exactly), against the
exact result. Why src/ops/conv2d_winograd_bf16.c uses F(2x2, 3x3).

    python3 tools/winograd_bf16_error.py [channels]

Prints the relative RMS error of each over 20 random 4x4 output blocks (inputs standard normal, weights
scaled by 1/sqrt(fan-in) as PyTorch initialises them). Needs numpy only.
"""
import sys

import numpy as np


def bf16(x):
    """x rounded to the nearest bfloat16 (ties to even), as float64."""
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return bits.astype(np.uint32).view(np.float32).astype(np.float64)


# Lavin and Gray's matrices: y = A^T [(G g G^T) * (B^T d B)] A.
F2 = dict(BT=[[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
          G=[[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]],
          AT=[[1, 1, 1, 0], [0, 1, -1, -1]])
F4 = dict(BT=[[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
              [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
          G=[[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
             [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
          AT=[[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])


def winograd(m, d, g):
    """The 4x4 outputs of input d (C, 6, 6) and weights g (O, C, 3, 3) in tiles of m's output size."""
    BT, G, AT = (np.array(m[k], np.float64) for k in ("BT", "G", "AT"))
    out_tile, in_tile = AT.shape
    y = np.zeros((g.shape[0], 4, 4))
    U = bf16(np.einsum("ij,ocjk,lk->ocil", G, g.astype(np.float32), G).astype(np.float32))
    for ty in range(0, 4, out_tile):
        for tx in range(0, 4, out_tile):
            patch = d[:, ty:ty + in_tile, tx:tx + in_tile].astype(np.float32)
            V = bf16(np.einsum("ij,cjk,lk->cil", BT, patch, BT).astype(np.float32))
            M = np.einsum("ocil,cil->oil", U, V)
            y[:, ty:ty + out_tile, tx:tx + out_tile] = np.einsum("ij,ojk,lk->oil", AT, M, AT)
    return y


def direct(d, g):
    y = np.zeros((g.shape[0], 4, 4))
    for oy in range(4):
        for ox in range(4):
            y[:, oy, ox] = np.einsum("ocij,cij->o", g, d[:, oy:oy + 3, ox:ox + 3])
    return y


def main():
    channels = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    rng = np.random.default_rng(0)
    errors = {"bf16 direct": [], "bf16 Winograd F(2x2, 3x3)": [], "bf16 Winograd F(4x4, 3x3)": []}
    for _ in range(20):
        d = rng.standard_normal((channels, 6, 6))
        g = rng.standard_normal((8, channels, 3, 3)) / np.sqrt(9 * channels)
        exact = direct(d, g)
        scale = np.sqrt(np.mean(exact ** 2))
        for name, y in (("bf16 direct", direct(bf16(d), bf16(g))), ("bf16 Winograd F(2x2, 3x3)", winograd(F2, d, g)),
                        ("bf16 Winograd F(4x4, 3x3)", winograd(F4, d, g))):
            errors[name].append(np.sqrt(np.mean((y - exact) ** 2)) / scale)
    for name, e in errors.items():
        print(f"{name:28s} relative RMS error {np.mean(e):.2e}")


if __name__ == "__main__":
    main()
