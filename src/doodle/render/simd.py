"""One explicit-SIMD compositing step of the rasteriser, written as LLVM vector IR (a numba intrinsic).

Why IR and not a numba loop: the step works on two 4-pixel "quads" at unrelated addresses
(usually two consecutive rows of a steep line, each starting at its own column), which LLVM's
auto-vectoriser will not combine into one 8-lane vector; written out as <8 x float> operations
it compiles to vector code on any CPU LLVM targets (with AVX-512 the masked byte loads and stores
are single instructions; elsewhere LLVM emulates the masks, slower but the same result).

`composite_quads(flat, oA, oB, (xA, xB, pyA, pyB, x_last), (ax, dx, dy, inv_len2, reach, reach2,
reach2_len2, solid), c, d, AA, MAX, INTERP)` composites one channel of a capsule (segment
ax,ay -> ax+dx,ay+dy, radius `reach`) onto the 8 pixels flat[oA:oA+4] (centres x = xA..xA+3, all
at y - ay = pyA) and flat[oB:oB+4] (xB.., pyB). The lanes follow the rules of `raster`'s module
docstring:

* t = clamped projection of the pixel centre on the segment; d2 = squared distance to the segment;
* anti-aliased (AA): coverage = clamp(reach - sqrt(d2), 0, 1) with reach = half width + 0.5;
  hard (not AA): covered when the centre is within reach = half width, decided on squared values
  (cross product in the body of the capsule, distance to the end point in the caps) so that
  pixels exactly on the edge are decided exactly;
* colour v = c + t * d (INTERP) or c;
* MAX: new = max(old, v * coverage); otherwise "over": new = old + (v - old) * coverage, or
  exactly v at full coverage; the result is rounded half up to uint8;
* lanes with x > x_last (past the end of the image row) are neither read nor written (masked
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


def _to_u8(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Round half up (x >= 0, x < 255.5) to uint8."""
    half = ir.Constant(_V8F, [0.5] * 8)
    return b.trunc(b.fptosi(b.fadd(x, half, flags=_FAST), _V8I32), _V8I8)


@intrinsic
def composite_quads(typingctx, flat, o_a, o_b, lanes, geo, c, d, aa, comp_max, interp):
    """See the module docstring; lanes = (xA, xB, pyA, pyB, x_last),
    geo = (ax, dx, dy, inv_len2, reach, reach2, reach2_len2, solid)."""
    flags = (aa, comp_max, interp)
    if not all(isinstance(f, types.BooleanLiteral) for f in flags):
        return None  # numba then retries with literal flags, or reports the call as untypable
    AA, MAX, INTERP = (f.literal_value for f in flags)
    sig = types.void(flat, o_a, o_b, lanes, geo, c, d, aa, comp_max, interp)

    def codegen(context, b, signature, args):
        flat_v, oa, ob, lanes_v, geo_v, c_v, d_v = args[:7]
        xa, xb, pya, pyb, xl = (b.extract_value(lanes_v, k) for k in range(5))
        ax_v, dx_v, dy_v, il2, r, r2, r2l2, solid_v = (b.extract_value(geo_v, k) for k in range(8))
        data = context.make_array(signature.args[0])(context, b, flat_v).data
        pa = b.gep(data, [oa])
        pb = b.gep(data, [ob])
        zero = ir.Constant(_V8F, [0.0] * 8)
        one = ir.Constant(_V8F, [1.0] * 8)
        x = b.fadd(_halves(b, xa, xb), ir.Constant(_V8F, [0.0, 1.0, 2.0, 3.0] * 2), flags=_FAST)
        py = _halves(b, pya, pyb)
        in_row = b.fcmp_ordered("<=", x, _splat(b, xl))
        vdx = _splat(b, dx_v)
        vdy = _splat(b, dy_v)
        px = b.fsub(x, _splat(b, ax_v), flags=_FAST)
        dot = b.fadd(b.fmul(px, vdx, flags=_FAST), b.fmul(py, vdy, flags=_FAST), flags=_FAST)
        t = b.fmul(dot, _splat(b, il2), flags=_FAST)
        tc = _fmin(b, _fmax(b, t, zero), one)
        ex = b.fsub(px, b.fmul(tc, vdx, flags=_FAST), flags=_FAST)
        ey = b.fsub(py, b.fmul(tc, vdy, flags=_FAST), flags=_FAST)
        d2 = b.fadd(b.fmul(ex, ex, flags=_FAST), b.fmul(ey, ey, flags=_FAST), flags=_FAST)
        v = _splat(b, c_v)
        if INTERP:
            v = b.fadd(v, b.fmul(tc, _splat(b, d_v), flags=_FAST), flags=_FAST)
        if not AA:
            is_solid = b.icmp_unsigned("!=", solid_v, ir.Constant(solid_v.type, 0))
            band = b.and_(b.fcmp_ordered(">=", t, zero), b.fcmp_ordered("<=", t, one))
            band = b.select(is_solid, band, ir.Constant(ir.VectorType(_I1, 8), [0] * 8))
            cross = b.fsub(b.fmul(px, vdy, flags=_FAST), b.fmul(py, vdx, flags=_FAST), flags=_FAST)
            in_body = b.fcmp_ordered("<=", b.fmul(cross, cross, flags=_FAST), _splat(b, r2l2))
            in_cap = b.fcmp_ordered("<=", d2, _splat(b, r2))
            covered = b.and_(b.select(band, in_body, in_cap), in_row)
            new = _to_u8(b, v)
            if MAX:
                old = _load8(b, pa, pb, covered)
                new = b.select(b.icmp_unsigned(">", new, old), new, old)
            _store8(b, new, pa, pb, covered)
            return context.get_dummy_value()
        cov = _fmax(b, _fmin(b, b.fsub(_splat(b, r), _sqrt(b, d2), flags=_FAST), one), zero)
        old = b.uitofp(_load8(b, pa, pb, in_row), _V8F)
        if MAX:
            new = _fmax(b, b.fmul(v, cov, flags=_FAST), old)
        else:
            blend = b.fadd(old, b.fmul(b.fsub(v, old, flags=_FAST), cov, flags=_FAST), flags=_FAST)
            new = b.select(b.fcmp_ordered(">=", cov, one), v, blend)
        _store8(b, _to_u8(b, new), pa, pb, in_row)
        return context.get_dummy_value()

    return sig, codegen
