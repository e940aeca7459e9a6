"""Careless or hostile kernel input gets a clear error (or warning) naming the argument, never a silent answer."""
import warnings

import pytest
import torch

from vssm.kernels import Routes, as_routes, selective_scan, selective_scan_reference

from .scan_inputs import as_float64, random_problem

NAMES = ("u", "delta", "A", "B", "C", "D", "delta_bias", "z")


def call(p, backend="torch", **overrides):
    kwargs = dict(zip(NAMES, p.args()))
    kwargs.update(overrides)
    routes = kwargs.pop("routes", p.routes)
    return selective_scan(**kwargs, routes=routes, backend=backend)


def routes_with(routes: Routes, **tables) -> Routes:
    fields = dict(index=routes.index, param_index=routes.param_index, u_group=routes.u_group,
                  direction=routes.direction)
    fields.update(tables)
    return Routes(**fields)


# --- devices ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES[1:])
def test_argument_on_another_device(name):
    p = random_problem()
    bad = dict(zip(NAMES, p.args()))[name].to("meta")
    with pytest.raises(ValueError, match=rf"^{name}: on device meta, expected u's device cpu"):
        call(p, **{name: bad})


@pytest.mark.parametrize("table", ["index", "param_index", "u_group"])
def test_route_table_on_another_device(table):
    p = random_problem(param_index=True)
    tables = dict(index=p.routes.index, param_index=p.routes.param_index, u_group=torch.tensor([1, 0]))
    tables[table] = tables[table].to("meta")
    name = "routes" if table == "index" else f"routes.{table}"
    with pytest.raises(ValueError, match=rf"^{name}: on device meta, expected u's device cpu"):
        call(p, routes=routes_with(p.routes, **tables))


def test_u_on_meta_with_cpu_parameters():
    p = random_problem()
    with pytest.raises(ValueError, match=r"^delta: on device cpu, expected u's device meta"):
        call(p, u=p.u.to("meta"))


# --- dtypes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["u", "delta", "B", "C", "z"])
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool, torch.complex64])
def test_activation_must_be_floating(name, dtype):
    p = random_problem()
    bad = dict(zip(NAMES, p.args()))[name].to(dtype)
    with pytest.raises(ValueError, match=rf"^{name}: got dtype {dtype}, expected one of"):
        call(p, **{name: bad})


@pytest.mark.parametrize("name", ["delta", "B", "C", "z", "A", "D", "delta_bias"])
def test_float64_argument_with_float32_u_is_not_rounded(name):
    p = random_problem()
    bad = dict(zip(NAMES, p.args()))[name].double()
    with pytest.raises(ValueError, match=rf"^{name}: got dtype torch.float64 with u torch.float32"):
        call(p, **{name: bad})


@pytest.mark.parametrize("name", ["A", "D", "delta_bias"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int32, torch.complex64])
def test_parameter_dtype(name, dtype):
    p = random_problem()
    bad = dict(zip(NAMES, p.args()))[name].to(dtype)
    with pytest.raises(ValueError, match=rf"^{name}: got dtype {dtype}, expected torch.float32"):
        call(p, **{name: bad})


def test_all_float64_is_the_reference_mode():
    p = as_float64(random_problem())
    out = call(p)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, selective_scan_reference(*p.args(), routes=p.routes), rtol=1e-12, atol=1e-12)


def test_float64_inputs_with_float32_parameters_compute_in_float64():
    """float32 parameters widen exactly; the scan still runs in float64."""
    p64 = as_float64(random_problem())
    params32 = dict(A=p64.A.float(), D=p64.D.float(), delta_bias=p64.delta_bias.float())
    out = call(p64, **params32)
    widened = dict(A=params32["A"].double(), D=params32["D"].double(), delta_bias=params32["delta_bias"].double())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, call(p64, **widened), rtol=1e-12, atol=1e-12)


def test_mixed_low_precision_activations_are_accepted():
    """bf16 u with float32 delta/B/C (autocast output next to a float32 projection) widen into float32."""
    p = random_problem()
    out = call(p, u=p.u.bfloat16(), z=p.z.half())
    assert out.dtype == torch.bfloat16
    expected = call(p, u=p.u.bfloat16().float(), z=p.z.half().float())
    torch.testing.assert_close(out, expected.bfloat16())


@pytest.mark.parametrize("out_dtype", [torch.int32, torch.bool, torch.complex64, "float32"])
def test_out_dtype_must_be_floating(out_dtype):
    """Checked by check_inputs(out_dtype=...), through the reference and the public operator."""
    p = random_problem()
    with pytest.raises(ValueError, match=r"^out_dtype: got"):
        selective_scan_reference(*p.args(), routes=p.routes, out_dtype=out_dtype)
    with pytest.raises(ValueError, match=r"^out_dtype: got"):
        selective_scan(*p.args(), routes=p.routes, out_dtype=out_dtype, backend="torch")


# --- values ----------------------------------------------------------------------------------------------


def test_positive_A_warns():
    p = random_problem()
    A = p.A.clone()
    A[1, 2, 0] = 0.5
    with pytest.warns(UserWarning, match=r"^A: has positive entries \(max 0\.5\)"):
        call(p, A=A)


def test_negative_and_zero_A_do_not_warn():
    p = random_problem()
    A = p.A.clone()
    A[0] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call(p, A=A)


# --- routes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("merge", ["sum", "mean", "none"])
def test_no_routes(merge):
    p = random_problem()
    empty = torch.zeros(0, 16, dtype=torch.int32)
    with pytest.raises(ValueError, match=r"^routes: got shape \(0, 16\), expected at least one route"):
        selective_scan(p.u[:, :, :1], p.delta[:, :, :0], p.A[:0], p.B[:, :, :0], p.C[:, :, :0],
                       routes=empty, merge=merge, backend="torch")


@pytest.mark.parametrize("routes", [[[0, 1, 2]], [0, 1, 2], (0, 1), "cross", None])
def test_routes_type(routes):
    p = random_problem()
    with pytest.raises(TypeError, match=r"^routes: got (list|tuple|str|NoneType), expected an int32 or int64 "
                                        r"tensor \(K, T\) or a vssm.kernels.Routes"):
        call(p, routes=routes)


def test_as_routes_passes_routes_through():
    routes = Routes(index=torch.zeros(1, 3, dtype=torch.int32))
    assert as_routes(routes) is routes
    assert as_routes(routes.index).index is routes.index


def test_routes_have_no_merge():
    """Strategies own their merge rule and pass it to selective_scan; a Routes never carries one."""
    with pytest.raises(TypeError, match="merge"):
        Routes(index=torch.zeros(1, 3, dtype=torch.int32), merge="mean")


@pytest.mark.parametrize("table", ["index", "param_index", "u_group"])
def test_in_place_edit_after_first_use_is_checked_again(table):
    p = random_problem(param_index=True)
    routes = routes_with(p.routes, u_group=torch.tensor([1, 0]))
    call(p, routes=routes)
    getattr(routes, table).fill_(13)  # token 13 is out of range; so is u slot 13
    with pytest.raises(ValueError, match=rf"^routes(\.{table})?: "):
        call(p, routes=routes)


def test_value_checks_are_cached_while_tables_are_unchanged():
    routes = Routes(index=torch.tensor([[0, 2, -1]], dtype=torch.int32))
    computed = []
    compute = lambda: computed.append(1) or 7  # noqa: E731
    assert routes._once("probe", compute) == 7 and routes._once("probe", compute) == 7
    assert computed == [1]
    routes.index[0, 0] = 1
    assert routes._once("probe", compute) == 7 and computed == [1, 1]


K_T = (2, 16)


@pytest.mark.parametrize(
    "fields, pattern",
    [
        (dict(index=torch.zeros(K_T)), r"^routes.index: got dtype torch.float32, expected torch.int32 or torch.int64"),
        (dict(index=torch.zeros(K_T, dtype=torch.int16)), r"^routes.index: got dtype torch.int16"),
        (dict(index=torch.zeros(K_T, dtype=torch.bool)), r"^routes.index: got dtype torch.bool"),
        (dict(index=torch.zeros(16, dtype=torch.int32)), r"^routes.index: got shape \(16,\) \(rank 1\), expected rank 2 \(K, T\)"),
        (dict(index=[[0, 1]]), r"^routes.index: got list, expected an int32 or int64 tensor \(K, T\)"),
        (dict(index=torch.zeros(0, 16, dtype=torch.int32)), r"^routes.index: got shape \(0, 16\), expected at least one route"),
        (dict(param_index=torch.zeros(2, 15, dtype=torch.int32)), r"^routes.param_index: got shape \(2, 15\), expected \(K, T\) = \(2, 16\)"),
        (dict(param_index=torch.zeros(K_T)), r"^routes.param_index: got dtype torch.float32"),
        (dict(u_group=torch.zeros(3, dtype=torch.int32)), r"^routes.u_group: got shape \(3,\), expected \(K,\) = \(2,\)"),
        (dict(u_group=torch.zeros(2, 1, dtype=torch.int32)), r"^routes.u_group: got shape \(2, 1\), expected \(K,\)"),
        (dict(u_group=torch.zeros(2)), r"^routes.u_group: got dtype torch.float32"),
        (dict(direction=torch.zeros(2, 17, dtype=torch.int64)), r"^routes.direction: got shape \(2, 17\), expected \(K, T\) = \(2, 16\)"),
        (dict(direction=torch.zeros(K_T)), r"^routes.direction: got dtype torch.float32"),
    ],
)
def test_routes_fields_are_checked_at_construction(fields, pattern):
    full = dict(index=torch.zeros(K_T, dtype=torch.int32))
    full.update(fields)
    with pytest.raises(ValueError, match=pattern):
        Routes(**full)


def test_routes_made_under_inference_mode_are_checked_and_cached():
    """Inference tensors have no version counter: their value cache is keyed on the storage alone."""
    p = random_problem()
    with torch.inference_mode():
        routes = Routes(index=p.routes.index.clone())
        expected = call(p, routes=routes)
        bad = Routes(index=routes.index.clone().fill_(13))
        with pytest.raises(ValueError, match=r"^routes: token indices must lie in \[-1, L\)"):
            call(p, routes=bad)
    torch.testing.assert_close(call(p, routes=routes), expected)  # a strategy's cached routes, reused in training
