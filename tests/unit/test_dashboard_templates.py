"""The pages' template environment: dict keys first, with Jinja's own meaning kept."""

from dataclasses import dataclass

from fabric.dashboard.app import HERE
from fabric.dashboard.page import Templates

templates = Templates(str(HERE / "templates"))


def render(source: str, **context: object) -> str:
    return templates.from_string(source).render(**context)


def test_a_dict_key_reads_like_an_attribute() -> None:
    assert (
        render("{{ s.name }}/{{ s['OS-EXT-STS:task_state'] }}", s={"name": "a", "OS-EXT-STS:task_state": "x"})
        == "a/x"
    )


def test_a_dicts_own_methods_still_win_over_its_keys() -> None:
    assert (
        render("{{ d.get('k') }}{% for k, v in d.items() %}{{ k }}{% endfor %}", d={"k": "v", "get": 1})
        == "vkget"
    )


def test_a_missing_key_is_undefined_not_an_error() -> None:
    assert render("[{{ s.nothing }}]{{ 'no' if s.nothing is undefined }}", s={}) == "[]no"


def test_objects_keep_their_attributes() -> None:
    @dataclass
    class Row:
        name: str

    assert render("{{ r.name }}", r=Row("x")) == "x"


def test_values_are_escaped() -> None:
    assert render("{{ s.name }}", s={"name": "<b>"}) == "&lt;b&gt;"
