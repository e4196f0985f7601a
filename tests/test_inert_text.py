"""cape.report.figures.inert_text (issue 18: made without validating the figure a second
time): the same figure as the validated copy it replaced (the same JSON, except that a
second validation ordered the template's keys otherwise), user text escaped, the input left
as it is, and the copy validating whatever a caller sets on it afterwards."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from cape.report import figures as F

EVIL = "<a href=https://evil.example>fam</a>"


def _old_inert_text(fig):
    """The implementation before issue 18: a validated copy, set key by key."""
    fig = go.Figure(fig)
    for trace in fig.data:
        for key in F._DATA_TEXT:
            try:
                value = trace[key]
            except (KeyError, ValueError):
                continue
            if value is None:
                continue
            new = F._inert(value)
            if new is not value:
                trace[key] = new
    return fig


def _figure():
    fig = F._figure("t", "Title <b>", "subtitle", "caption")
    fig.add_trace(go.Scatter(x=[1.0, 2.0, 3.0], y=[3, 1, 2], name=EVIL, text=[EVIL, "b", None],
                             customdata=np.array([[EVIL, 1], ["x", 2], ["y", 3]], dtype=object),
                             hovertemplate="%{customdata[0]}"))
    fig.add_trace(go.Bar(x=[EVIL, "plain"], y=[1, 2], hovertext=(EVIL, "ok")))
    fig.add_trace(go.Violin(y=np.arange(600.0), x=[EVIL] * 600, name="v", legendgrouptitle={"text": "g"}))
    fig.add_trace(go.Pie(labels=[EVIL, "b"], values=[1, 2]))
    fig.update_yaxes(autorange="reversed", title=None)         # an empty title, which validation drops
    fig.update_xaxes(title=dict(font=dict()))
    return fig


def test_same_figure_as_the_validated_copy_and_input_untouched():
    fig = _figure()
    before = pio.to_json(fig)
    out = F.inert_text(fig)
    assert out is not fig and pio.to_json(fig) == before
    assert json.loads(pio.to_json(out)) == json.loads(pio.to_json(_old_inert_text(fig)))
    safe = "&lt;a href=https://evil.example&gt;fam&lt;/a&gt;"
    data = json.loads(pio.to_json(out))["data"]
    assert data[0]["name"] == safe and data[0]["text"][0] == safe and data[0]["customdata"][0][0] == safe
    assert data[1]["x"][0] == safe and data[1]["hovertext"][0] == safe and data[3]["labels"][0] == safe
    assert EVIL not in json.dumps(data)
    assert fig.to_dict()["layout"]["yaxis"]["title"] == {}
    assert "title" not in json.loads(pio.to_json(out))["layout"]["yaxis"]
    # a figure in plotly's default template
    plain = go.Figure(go.Scatter(x=[1, 2], y=[1, 2], name=EVIL))
    assert json.loads(pio.to_json(F.inert_text(plain))) == json.loads(pio.to_json(_old_inert_text(plain)))


def test_the_copy_still_validates_what_is_set_later():
    out = F.inert_text(_figure())
    with pytest.raises(ValueError):
        out.data[0]["no_such_property"] = 1
    with pytest.raises(ValueError):
        out.update_layout(height="tall")
    out.data[2]["x"] = None                                   # removed, as on a validated figure
    out.data[2]["x0"] = "v"
    old = _old_inert_text(_figure())
    old.data[2]["x"] = None
    old.data[2]["x0"] = "v"
    assert json.loads(pio.to_json(out)) == json.loads(pio.to_json(old))
    assert "x" not in json.loads(pio.to_json(out))["data"][2]
