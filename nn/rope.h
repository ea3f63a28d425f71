/*
 * rope.h - the 2-D rotary position tables of DINOv3 (axial, no mixing).
 *
 * Patch (py, px) of an Hp x Wp grid has its centre at
 *     y = 2 * (py + 0.5) / Hp - 1,   x = 2 * (px + 0.5) / Wp - 1
 * (each axis normalised separately to [-1, 1]), both multiplied by one
 * rescale factor s. With Q = Dh / 4 periods  period_i = base^(2i / (Dh/2)),
 * the angles of one patch are
 *     [2 pi y / period_0 .. 2 pi y / period_{Q-1}, 2 pi x / period_0 .. ]
 * (Dh/2 values) repeated twice to Dh values; sin and cos of them are the
 * tables that attention_forward and attention_backward (backend.h) rotate
 * q and k by.
 */
#ifndef DD_NN_ROPE_H
#define DD_NN_ROPE_H

/* sin[Hp*Wp, Dh], cos[Hp*Wp, Dh] on the host; Dh % 4 == 0. */
void rope_tables(float *sin_table, float *cos_table, int Hp, int Wp, int Dh,
                 double base, double rescale);

#endif
