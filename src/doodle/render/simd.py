"""One explicit-SIMD compositing step of the rasteriser, written as LLVM vector IR (a numba intrinsic).

Why IR and not a numba loop: the step works on two 4-pixel "quads" at unrelated addresses
(usually two consecutive rows of a steep line, each starting at its own column), which LLVM's
auto-vectoriser will not combine into one 8-lane vector; written out as <8 x float> operations
it compiles to vector code on any CPU LLVM targets (with AVX-512 the masked byte loads and stores
are single instructions; elsewhere LLVM emulates the masks, slower but the same result).

`composite_quads(flat, oA, oB, (pxA, pxB, pyA, pyB, xl), (dx, dy, dxn, dyn, inv_len, reach,
reach2, reach2_len2, solid), c, d, AA, MAX, INTERP)` composites one channel of a capsule (segment
a -> a + (dx, dy), radius `reach`) onto the 8 pixels flat[oA:oA+4] and flat[oB:oB+4]. Lane
positions are relative to a: the first quad's pixel centres are at x - ax = pxA + 0..3,
y - ay = pyA, the second's at pxB + 0..3, pyB. dxn, dyn = (dx, dy) / len^2 and inv_len = 1 / len
(0 for a zero-length segment, solid = False). The lanes follow the rules of `raster`'s module
docstring:

* t = projection of the pixel centre on the segment (0 at a, 1 at b);
* anti-aliased (AA): coverage = clamp(reach - distance, 0, 1) with reach = half width + 0.5; the
  distance is |cross product| / len in the body (0 <= t <= 1) and the distance to the nearer end
  point in the caps;
* hard (not AA): covered when the centre is within reach = half width, decided on squared values
  (cross product in the body of the capsule, distance to the end point in the caps) so that
  pixels exactly on the edge are decided exactly;
* colour v = c + clamp(t, 0, 1) * d (INTERP) or c;
* MAX: new = max(old, v * coverage); otherwise "over": new = old + (v - old) * coverage (exactly
  v at full coverage); the result is rounded half up to uint8;
* lanes with x - ax > xl (past the end of the image row) are neither read nor written (masked
  loads and stores), so a quad may start up to 3 pixels before the row's end.

AA, MAX and INTERP must be compile-time constants (numba literals): each combination compiles
to its own straight-line code. The hard-edged "over" case with a constant colour never reads the
image: it stores the colour with the coverage as the store mask.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_I8 = ir.IntType(8)
_I1 = ir.IntType(1)
_V8F = ir.VectorType(_F32, 8)
_V8I8 = ir.VectorType(_I8, 8)
_V8I32 = ir.VectorType(_I32, 8)
_V4I8 = ir.VectorType(_I8, 4)
_V4I1 = ir.VectorType(_I1, 4)
_FAST = ("fast",)


def _lanes(*k: int) -> ir.Constant:
    return ir.Constant(ir.VectorType(_I32, len(k)), list(k))


def _halves(b: ir.IRBuilder, lo: ir.Value, hi: ir.Value) -> ir.Value:
    """<lo, lo, lo, lo, hi, hi, hi, hi>."""
    v = b.insert_element(ir.Constant(_V8F, ir.Undefined), lo, ir.Constant(_I32, 0))
    v = b.insert_element(v, hi, ir.Constant(_I32, 4))
    return b.shuffle_vector(v, v, _lanes(0, 0, 0, 0, 4, 4, 4, 4))


def _splat(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _halves(b, x, x)


def _quad(b: ir.IRBuilder, v: ir.Value, k: int) -> ir.Value:
    """Lanes 4k..4k+3 of an 8-lane vector."""
    return b.shuffle_vector(v, v, _lanes(*range(4 * k, 4 * k + 4)))


def _fmin(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.select(b.fcmp_ordered("<", x, y, flags=_FAST), x, y)


def _fmax(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.select(b.fcmp_ordered(">", x, y, flags=_FAST), x, y)


def _sqrt(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    fn = cgutils.get_or_insert_function(b.module, ir.FunctionType(_V8F, [_V8F]), "llvm.sqrt.v8f32")
    return b.call(fn, [x])


def _fabs(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    fn = cgutils.get_or_insert_function(b.module, ir.FunctionType(_V8F, [_V8F]), "llvm.fabs.v8f32")
    return b.call(fn, [x])


def _fma(b: ir.IRBuilder, x: ir.Value, y: ir.Value, z: ir.Value) -> ir.Value:
    fn = cgutils.get_or_insert_function(b.module, ir.FunctionType(_V8F, [_V8F] * 3), "llvm.fma.v8f32")
    return b.call(fn, [x, y, z])


def _norm2(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.fadd(b.fmul(x, x, flags=_FAST), b.fmul(y, y, flags=_FAST), flags=_FAST)


def _load(b: ir.IRBuilder, ptr: ir.Value, mask: ir.Value) -> ir.Value:
    fnty = ir.FunctionType(_V4I8, [ptr.type, _I32, _V4I1, _V4I8])
    fn = cgutils.get_or_insert_function(b.module, fnty, "llvm.masked.load.v4i8.p0")
    return b.call(fn, [ptr, ir.Constant(_I32, 1), mask, ir.Constant(_V4I8, [0] * 4)])


def _store(b: ir.IRBuilder, value: ir.Value, ptr: ir.Value, mask: ir.Value) -> None:
    fnty = ir.FunctionType(ir.VoidType(), [_V4I8, ptr.type, _I32, _V4I1])
    fn = cgutils.get_or_insert_function(b.module, fnty, "llvm.masked.store.v4i8.p0")
    b.call(fn, [value, ptr, ir.Constant(_I32, 1), mask])


def _load8(b: ir.IRBuilder, pa: ir.Value, pb: ir.Value, mask: ir.Value) -> ir.Value:
    return b.shuffle_vector(_load(b, pa, _quad(b, mask, 0)), _load(b, pb, _quad(b, mask, 1)), _lanes(*range(8)))


def _store8(b: ir.IRBuilder, value: ir.Value, pa: ir.Value, pb: ir.Value, mask: ir.Value) -> None:
    _store(b, _quad(b, value, 0), pa, _quad(b, mask, 0))
    _store(b, _quad(b, value, 1), pb, _quad(b, mask, 1))


def _floor_u8(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Truncate (x >= 0, x < 256) to uint8."""
    return b.trunc(b.fptosi(x, _V8I32), _V8I8)


def _to_u8(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Round half up (x >= 0, x < 255.5) to uint8."""
    return _floor_u8(b, b.fadd(x, ir.Constant(_V8F, [0.5] * 8), flags=_FAST))


@intrinsic
def composite_quads(typingctx, flat, o_a, o_b, lanes, geo, c, d, aa, comp_max, interp):
    """See the module docstring; lanes = (pxA, pxB, pyA, pyB, xl),
    geo = (dx, dy, dxn, dyn, inv_len, reach, reach2, reach2_len2, solid)."""
    flags = (aa, comp_max, interp)
    if not all(isinstance(f, types.BooleanLiteral) for f in flags):
        return None  # numba then retries with literal flags, or reports the call as untypable
    AA, MAX, INTERP = (f.literal_value for f in flags)
    sig = types.void(flat, o_a, o_b, lanes, geo, c, d, aa, comp_max, interp)

    def codegen(context, b, signature, args):
        flat_v, oa, ob, lanes_v, geo_v, c_v, d_v = args[:7]
        pxa, pxb, pya, pyb, xl = (b.extract_value(lanes_v, k) for k in range(5))
        dx_v, dy_v, dxn_v, dyn_v, il_v, r, r2, r2l2, solid_v = (b.extract_value(geo_v, k) for k in range(9))
        data = context.make_array(signature.args[0])(context, b, flat_v).data
        pa = b.gep(data, [oa])
        pb = b.gep(data, [ob])
        zero = ir.Constant(_V8F, [0.0] * 8)
        one = ir.Constant(_V8F, [1.0] * 8)
        lane = ir.Constant(_V8F, [0.0, 1.0, 2.0, 3.0] * 2)
        px0 = _halves(b, pxa, pxb)
        in_row = b.fcmp_ordered("<=", lane, b.fsub(_splat(b, xl), px0, flags=_FAST))
        px = b.fadd(px0, lane, flags=_FAST)
        py = _halves(b, pya, pyb)
        vdx = _splat(b, dx_v)
        vdy = _splat(b, dy_v)
        t = b.fadd(b.fmul(px, _splat(b, dxn_v), flags=_FAST), b.fmul(py, _splat(b, dyn_v), flags=_FAST), flags=_FAST)
        cross = b.fsub(b.fmul(px, vdy, flags=_FAST), b.fmul(py, vdx, flags=_FAST), flags=_FAST)
        d2a = _norm2(b, px, py)  # to the start point, nearest where t <= 0
        d2b = _norm2(b, b.fsub(px, vdx, flags=_FAST), b.fsub(py, vdy, flags=_FAST))  # the end, t >= 1
        v = _splat(b, c_v)
        if INTERP:
            v = b.fadd(v, b.fmul(_fmin(b, _fmax(b, t, zero), one), _splat(b, d_v), flags=_FAST), flags=_FAST)
        if not AA:
            is_solid = b.icmp_unsigned("!=", solid_v, ir.Constant(solid_v.type, 0))
            band = b.and_(b.fcmp_ordered(">=", t, zero), b.fcmp_ordered("<=", t, one))
            band = b.select(is_solid, band, ir.Constant(ir.VectorType(_I1, 8), [0] * 8))
            in_body = b.fcmp_ordered("<=", b.fmul(cross, cross, flags=_FAST), _splat(b, r2l2))
            in_cap = b.fcmp_ordered("<=", b.select(b.fcmp_ordered("<", t, zero), d2a, d2b), _splat(b, r2))
            covered = b.and_(b.select(band, in_body, in_cap), in_row)
            new = _to_u8(b, v)
            if MAX:
                old = _load8(b, pa, pb, covered)
                new = b.select(b.icmp_unsigned(">", new, old), new, old)
            _store8(b, new, pa, pb, covered)
            return context.get_dummy_value()
        # distance: |cross| / len in the body (no square root on that path), the end point's in
        # the caps; the larger of the two is the right one in both (a cap is never nearer than
        # the line), and a zero-length segment (t = 0, inv_len = 0) is all cap
        cap2 = b.select(b.fcmp_ordered("<=", t, zero), d2a, b.select(b.fcmp_ordered(">=", t, one), d2b, zero))
        body = b.fmul(_fabs(b, cross), _splat(b, il_v), flags=_FAST)
        dist = _fmax(b, _sqrt(b, cap2), body)
        cov = _fmax(b, _fmin(b, b.fsub(_splat(b, r), dist, flags=_FAST), one), zero)
        old = b.uitofp(_load8(b, pa, pb, in_row), _V8F)
        if MAX:
            new = _to_u8(b, _fmax(b, b.fmul(v, cov, flags=_FAST), old))
        else:
            # old + (v - old) * cov + 0.5 in one rounding (a fused multiply-add): exactly v + 0.5
            # at full coverage, since v - old and old + 0.5 are exact for 0..255 values
            old_half = b.fadd(old, ir.Constant(_V8F, [0.5] * 8))
            new = _floor_u8(b, _fma(b, cov, b.fsub(v, old), old_half))
        _store8(b, new, pa, pb, in_row)
        return context.get_dummy_value()

    return sig, codegen
