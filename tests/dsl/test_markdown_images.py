"""markdown_images(): image URLs out of a chat answer's text, for provider files."""

from __future__ import annotations

from engine.dsl.expressions import Expr

EXPR = Expr(
    "choices[0].message.images[].image_url.url || markdown_images(choices[0].message.content)"
)


def answer(content: object, images: list[str] | None = None) -> dict[str, object]:
    message: dict[str, object] = {"content": content}
    if images is not None:
        message["images"] = [{"image_url": {"url": u}} for u in images]
    return {"choices": [{"message": message}]}


def test_markdown_images_in_order_and_only_fetchable_schemes() -> None:
    text = (
        'Here:\n\n![image](https://cdn.example/a.png) then ![b](<http://x/b.png> "title")\n'
        "![bad](javascript:alert(1)) ![rel](/files/c.png) ![f](file:///etc/passwd) [link](https://l)"
        " ![d](data:image/png;base64,AAAA)"
    )
    assert EXPR.search(answer(text)) == [
        "https://cdn.example/a.png",
        "http://x/b.png",
        "data:image/png;base64,AAAA",
    ]


def test_the_images_field_wins_and_non_text_is_nothing() -> None:
    assert EXPR.search(answer("![x](https://z/x.png)", ["https://y/1.png"])) == ["https://y/1.png"]
    assert EXPR.search(answer(None)) == []
    assert EXPR.search(answer(42)) is None  # a number is no text: no images
    assert Expr("markdown_images(t)").search({"t": "no images here"}) == []
