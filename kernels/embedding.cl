## embedding.cl: rows of a table picked by integer ids (held as reals: exact below 2^24 in
## float32), and the table's gradient summed without atomics, in a fixed order.
<%include file="common.cl"/>

// out[p, d] = table[ids[p], d] for every position p. Dimension 0: d; dimension 1: p.
${kernel("embedding_gather", "const real *ids, const real *table, real *out, index_t positions, index_t dim")} {
    const index_t d = get_global_id(0), p = get_global_id(1);
    if (d >= dim || p >= positions) return;
    const index_t id = (index_t)ids_p[ids_off + p];
    out_p[out_off + (size_t)p * dim + d] = table_p[table_off + (size_t)id * dim + d];
}

// grad[v, d] = the sum of delta[p, d] over the positions p whose id is v, in order of p, for the
// rows v of chunk get_global_id(1) (`chunk` rows each): each work-item zeroes its rows' column d,
// then walks every position. No two work-items write one element, so no atomics.
${kernel("embedding_scatter", "const real *ids, const real *delta, real *grad, index_t positions, index_t dim, "
                              "index_t vocab, index_t chunk")} {
    const index_t d = get_global_id(0), first = get_global_id(1) * chunk;
    if (d >= dim || first >= vocab) return;
    const index_t end = min(first + chunk, vocab);
    __global real *g = grad_p + grad_off + d;
    for (index_t v = first; v < end; v++) g[(size_t)v * dim] = 0;
    for (index_t p = 0; p < positions; p++) {
        const index_t id = (index_t)ids_p[ids_off + p];
        if (id >= first && id < end) g[(size_t)id * dim] += delta_p[delta_off + (size_t)p * dim + d];
    }
}
