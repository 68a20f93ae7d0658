// What a learner sees, read from the DOM of an open notebook (JupyterLab or nbconvert's HTML).
// Called by tests/test_browser.py as page.evaluate(<this file>, rootSelector); returns plain data.
(rootSelector) => {
  const root = document.querySelector(rootSelector);
  if (!root) return { error: `no element matches ${rootSelector}` };

  // ---- colours: any CSS colour -> [r, g, b, a] (0-255, alpha 0-1), by painting one pixel
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 1;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const rgba = (css) => {
    ctx.clearRect(0, 0, 1, 1);
    ctx.fillStyle = "rgba(0, 0, 0, 0)";
    ctx.fillStyle = css;
    ctx.fillRect(0, 0, 1, 1);
    const [r, g, b, a] = ctx.getImageData(0, 0, 1, 1).data;
    return [r, g, b, a / 255];
  };
  const over = (top, bottom) => {
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  };
  // the colour behind an element: its own and its ancestors' backgrounds, composited; the
  // canvas behind everything is white
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    let result = [255, 255, 255, 1];
    for (const layer of layers.reverse()) result = over(layer, result);
    return result;
  };
  const luminance = ([r, g, b]) => {
    const lin = (v) => {
      v /= 255;
      return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    };
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  };
  const contrast = (fg, bg) => {
    const [l1, l2] = [luminance(fg), luminance(bg)].sort((x, y) => y - x);
    return (l1 + 0.05) / (l2 + 0.05);
  };
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return { x: Math.round(r.x), y: Math.round(r.y), w: Math.round(r.width), h: Math.round(r.height) };
  };
  const shown = (el) =>
    el.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true }) && box(el).w > 0 && box(el).h > 0;
  const directText = (el) =>
    [...el.childNodes]
      .filter((n) => n.nodeType === Node.TEXT_NODE)
      .map((n) => n.textContent)
      .join("")
      .trim();

  // how many lines a table cell's text takes: the tops of its text's boxes, a line apart
  const lines = (el) => {
    const range = document.createRange();
    range.selectNodeContents(el);
    const tops = [...range.getClientRects()].filter((r) => r.width > 0).map((r) => r.top).sort((p, q) => p - q);
    const height = parseFloat(getComputedStyle(el).fontSize) || 14;
    return tops.filter((top, i) => i === 0 || top - tops[i - 1] > height / 2).length;
  };

  const cells = [...root.querySelectorAll(".jp-Cell")].map((cell) => {
    const outputs = [...cell.querySelectorAll(".jp-OutputArea-output")].map((out) => {
      const images = [...out.querySelectorAll("img, svg")]
        .filter((el) => !el.parentElement.closest("svg"))
        .map((el) => ({
          tag: el.tagName.toLowerCase(),
          ...box(el),
          natural: el.tagName.toLowerCase() === "img" ? [el.naturalWidth, el.naturalHeight] : null,
          shown: shown(el),
        }));
      const tables = [...out.querySelectorAll(".jp-RenderedHTMLCommon table, table")]
        .filter((t) => t.closest(".jp-RenderedHTMLCommon"))
        .map((t) => ({
          ...box(t),
          shown: shown(t),
          cells: t.querySelectorAll("td, th").length,
          text: t.innerText.slice(0, 120),
          overflows: t.getBoundingClientRect().right > out.getBoundingClientRect().right + 1,
          wrapped: [...t.querySelectorAll("td, th")].filter((c) => lines(c) > 1).map((c) => c.innerText.slice(0, 80)),
        }));
      // every piece of text in an HTML report: its colour against what is behind it
      const texts = [];
      if (out.dataset.mimeType === "text/html") {
        for (const el of out.querySelectorAll("*")) {
          const text = directText(el);
          if (!text || !shown(el)) continue;
          const style = getComputedStyle(el);
          const fg0 = rgba(style.color);
          const bg = background(el);
          const fg = over(fg0, bg);
          texts.push({
            kind: el.closest("td, th") ? "table cell" : el.closest("li") ? "note" : "text",
            tag: el.tagName.toLowerCase(),
            text: text.slice(0, 60),
            color: style.color,
            fg: fg.map(Math.round),
            bg: bg.map(Math.round),
            ratio: Math.round(contrast(fg, bg) * 100) / 100,
          });
        }
      }
      // nbconvert writes no data-mime-type on a PNG's output: the image's data URL says it
      const src = (out.querySelector("img") || {}).src || "";
      const mime = out.dataset.mimeType || (src.match(/^data:(image\/[^;,]+)/) || [])[1] || "";
      return {
        mime,
        ...box(out),
        text: out.innerText.slice(0, 300),
        images,
        tables,
        texts,
      };
    });
    return { classes: cell.className, outputs };
  });

  // ---- tofu: every CJK character in the outputs, drawn in the font of the element that shows it.
  // A missing glyph is drawn as the same box (or nothing) whatever the character, so two
  // different characters that draw identically, or a character that draws nothing, are tofu.
  const glyphs = new Map(); // char -> font
  for (const out of root.querySelectorAll(".jp-OutputArea-output")) {
    const walker = document.createTreeWalker(out, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      for (const ch of n.textContent.match(/[\u3001-\u303f\u3400-\u9fff\uff00-\uffef]/gu) || []) {
        if (!glyphs.has(ch)) {
          const s = getComputedStyle(n.parentElement);
          glyphs.set(ch, `${s.fontStyle} ${s.fontWeight} 32px ${s.fontFamily}`);
        }
      }
    }
  }
  const big = document.createElement("canvas");
  big.width = big.height = 48;
  const g = big.getContext("2d", { willReadFrequently: true });
  const drawn = new Map(); // bitmap -> chars
  const blank = [];
  for (const [ch, font] of glyphs) {
    g.clearRect(0, 0, 48, 48);
    g.font = font;
    g.fillStyle = "#000";
    g.textBaseline = "top";
    g.fillText(ch, 4, 4);
    const alpha = g.getImageData(0, 0, 48, 48).data.filter((_, i) => i % 4 === 3);
    if (!alpha.some((v) => v > 0)) blank.push(ch);
    const key = alpha.join(",");
    drawn.set(key, (drawn.get(key) || "") + ch);
  }
  const same = [...drawn.values()].filter((chars) => chars.length > 1);

  return {
    cells,
    cjk: { chars: [...glyphs.keys()].join(""), blank: blank.join(""), drawnAlike: same },
    scroll: [document.documentElement.scrollWidth, document.documentElement.scrollHeight],
  };
}
