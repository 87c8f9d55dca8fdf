## tiles.cl: no kernels; what gemm.cl and pack.cl share: the tile shape and vector types.
## Params: dtype; rows (tile rows); width (elements per vector: a tile row is two vectors).
<%include file="common.cl"/>
// op(B) rows and the bias are read in place as vectors at any element offset
typedef real unaligned_vec __attribute__((ext_vector_type(${width}), aligned(${8 if dtype == "float64" else 4})));
#define TILE_ROWS ${rows}
#define TILE_COLS ${2 * width}

