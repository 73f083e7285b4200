"""The public surface: a sorted __all__ that matches what the package exports."""

import types

import ray_orch


def test_all_is_sorted_and_complete():
    assert ray_orch.__all__ == sorted(ray_orch.__all__)
    for name in ray_orch.__all__:
        assert hasattr(ray_orch, name), name
    public = {name for name, value in vars(ray_orch).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    assert public == set(ray_orch.__all__)


def test_errors_form_one_tree():
    for name in ray_orch.__all__:
        value = getattr(ray_orch, name)
        if isinstance(value, type) and issubclass(value, Exception) and \
                not issubclass(value, Warning):
            assert issubclass(value, ray_orch.RayOrchError), name


def test_importing_the_package_loads_neither_ray_nor_litellm():
    import subprocess
    import sys

    code = "import sys, ray_orch; print('ray' in sys.modules, 'litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]
