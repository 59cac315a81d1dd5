// Shared by both consoles. Every value from the server or a user (names, prompts, model
// descriptions, notes, errors) goes into the page as text: no innerHTML, ever.
"use strict";

const $ = (id) => document.getElementById(id);
// No login by link: a #token= URL would log a victim into whatever account it names.
let token = localStorage.getItem("shengtu.token") || "";

// el("div", {class: "x"}, "text", child): an element whose strings are text nodes.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Only our own or web URLs become links or images (never javascript: or data:).
function safeUrl(url) {
  try {
    const parsed = new URL(String(url), location.href);
    return ["http:", "https:"].includes(parsed.protocol) ? parsed.href : null;
  } catch (e) { return null; }
}

async function api(path, options = {}) {
  // The server's messages in the console's language, whatever the browser's own.
  const headers = Object.assign({ "Accept-Language": lang === "en" ? "en" : "zh-CN" }, options.headers || {});
  if (token) headers["Authorization"] = "Bearer " + token;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const res = await fetch(path, Object.assign({}, options, { headers }));
  const body = await res.json().catch(() => ({ code: res.status, message: t("badAnswer") }));
  if (body.code !== 200) { const e = new Error(body.message || t("failed")); e.code = body.code; e.data = body.data; throw e; }
  return body.data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  return q.toString();
}

function say(id, text, ok) { const node = $(id); node.textContent = text; node.className = "msg " + (ok ? "ok" : "bad"); }

// --- Language: Chinese by default, English on request; kept in localStorage. -------------
const TEXT = { zh: {}, en: {} };
function words(table) {
  for (const [key, [zh, en]] of Object.entries(table)) { TEXT.zh[key] = zh; TEXT.en[key] = en; }
}
words({
  badAnswer: ["服务器返回了无法解析的内容", "The server sent an answer that cannot be read"],
  failed: ["请求失败", "Request failed"],
  lang: ["English", "中文"],
  logout: ["退出登录", "Sign out"],
  currentUser: ["当前用户:", "Signed in as: "],
  prev: ["上一页", "Previous"],
  next: ["下一页", "Next"],
  pageOf: ["第 {0} / {1} 页,共 {2} 条", "Page {0} of {1}, {2} in all"],
  none: ["暂无数据", "Nothing here yet"],
  points: ["积分", "points"],
  created: ["已创建", "Created"],
  queued: ["排队中", "Queued"],
  processing: ["生成中", "Generating"],
  completed: ["已完成", "Completed"],
  failed_: ["失败", "Failed"],
  confirm: ["确定?", "Are you sure?"],
  saved: ["已保存", "Saved"],
  close: ["关闭", "Close"],
});
let lang = localStorage.getItem("shengtu.lang") === "en" ? "en" : "zh";
function t(key, ...args) {
  let text = (TEXT[lang][key] ?? TEXT.zh[key] ?? key);
  args.forEach((a, i) => { text = text.replace("{" + i + "}", String(a)); });
  return text;
}
function statusText(s) { return t(s === "failed" ? "failed_" : s); }
function translatePage() {
  document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
  document.querySelectorAll("[data-i18n]").forEach(n => { n.textContent = t(n.dataset.i18n); });
  document.querySelectorAll("[data-i18n-ph]").forEach(n => { n.placeholder = t(n.dataset.i18nPh); });
  const switcher = $("lang");
  if (switcher) switcher.textContent = t("lang");
}
function setupLanguage(onChange) {
  const switcher = $("lang");
  if (switcher) switcher.onclick = () => {
    lang = lang === "en" ? "zh" : "en";
    localStorage.setItem("shengtu.lang", lang);
    // A message said in the other language is not said again in this one: cleared.
    document.querySelectorAll(".msg").forEach(n => { n.textContent = ""; n.className = "msg"; });
    translatePage();
    if (onChange) onChange();
  };
  translatePage();
}

// --- Tabs: buttons with aria-controls; arrow keys move between them. ------------------------
function setupTabs(container, onShow) {
  const tabs = Array.from(container.querySelectorAll("[role=tab]"));
  const show = (tab) => {
    tabs.forEach(x => {
      const on = x === tab;
      x.setAttribute("aria-selected", on ? "true" : "false");
      x.tabIndex = on ? 0 : -1;
      $(x.getAttribute("aria-controls")).hidden = !on;
    });
    if (onShow) onShow(tab.getAttribute("aria-controls"));
  };
  tabs.forEach((tab, i) => {
    tab.onclick = () => show(tab);
    tab.onkeydown = (ev) => {
      const step = ev.key === "ArrowRight" ? 1 : ev.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      next.focus(); show(next);
    };
  });
  return show;
}

// --- Tables and pages. ------------------------------------------------------------------------
// columns: [[heading key, (row) => cell content]]
function table(columns, rows) {
  if (!rows.length) return el("p", { class: "meta" }, t("none"));
  return el("div", { class: "table-wrap" }, el("table", {},
    el("thead", {}, el("tr", {}, columns.map(([h]) => el("th", { scope: "col" }, t(h))))),
    el("tbody", {}, rows.map(r => el("tr", {}, columns.map(([, cell]) => el("td", {}, cell(r))))))));
}
// A time as the API gives it (2026-12-06T00:24:32, the site's clock), as people read it,
// on one line.
function when(iso) {
  return iso ? el("span", { class: "nowrap" }, String(iso).replace("T", " ")) : "—";
}
// A page of a list that answers {records, total} only, in the shape pager() reads.
function paged(data, page, size) {
  return Object.assign({ current: page, size, pages: Math.ceil(data.total / size) }, data);
}
function pager(page, load) {
  if (page.pages <= 1) return el("p", { class: "meta" }, t("pageOf", page.current, Math.max(page.pages, 1), page.total));
  return el("div", { class: "row" },
    el("button", { class: "link", disabled: page.current <= 1, onclick: () => load(page.current - 1) }, t("prev")),
    el("span", { class: "meta" }, t("pageOf", page.current, page.pages, page.total)),
    el("button", { class: "link", disabled: page.current >= page.pages, onclick: () => load(page.current + 1) }, t("next")));
}

// --- A bar chart in SVG; labels are text nodes. -----------------------------------------------
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.append(document.createTextNode(String(text)));
  return node;
}
// series: [{label, value}]; the figure has a text summary for screen readers.
function barChart(series, caption) {
  const w = 640, h = 180, pad = 24;
  const max = Math.max(1, ...series.map(s => s.value));
  const step = (w - pad * 2) / Math.max(series.length, 1);
  const chart = svg("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", class: "chart" });
  chart.append(svg("title", {}, caption));
  series.forEach((s, i) => {
    const bh = Math.round((h - pad * 2) * s.value / max);
    const width = Math.min(Math.max(step - 2, 1), 48);
    const bar = svg("rect", { x: pad + i * step + (step - width) / 2, y: h - pad - bh, width, height: bh, class: "bar-fill" });
    bar.append(svg("title", {}, `${s.label}: ${s.value}`));
    chart.append(bar);
  });
  if (series.length) {
    chart.append(svg("text", { x: pad, y: h - 6, class: "axis" }, series[0].label));
    chart.append(svg("text", { x: w - pad, y: h - 6, class: "axis", "text-anchor": "end" }, series[series.length - 1].label));
    chart.append(svg("text", { x: pad, y: 14, class: "axis" }, String(max)));
  }
  return el("figure", {}, chart, el("figcaption", { class: "meta" }, caption));
}

// --- Money: the API's amounts are integers in the currency's minor unit (fen, cents). ---------
// The server's count for a currency (minorDigits of /user/pay/options and of the payment
// settings), which the amounts it takes are in; Intl's only for one it has not given.
const serverDigits = {};
function knowDigits(currency, digits) { if (currency && Number.isInteger(digits)) serverDigits[currency] = digits; }
function minorDigits(currency) {
  if (Object.hasOwn(serverDigits, currency)) return serverDigits[currency];
  try { return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits; }
  catch (e) { return 2; }  // not a currency Intl knows: the usual two
}
function money(amount, currency) {
  const major = Number(amount) / 10 ** minorDigits(currency);
  try { return new Intl.NumberFormat(lang === "en" ? "en" : "zh-CN", { style: "currency", currency }).format(major); }
  catch (e) { return `${major} ${currency}`; }
}
// What a person types ("12.5" yuan) in minor units (1250); NaN when it is not an amount.
function toMinor(text, currency) {
  const typed = String(text).trim();
  const value = Number(typed);
  return typed === "" || !Number.isFinite(value) ? NaN : Math.round(value * 10 ** minorDigits(currency));
}
function toMajor(amount, currency) { return String(Number(amount) / 10 ** minorDigits(currency)); }
words({
  pay_pending: ["待支付", "Awaiting payment"],
  pay_paid: ["已支付", "Paid"],
  pay_expired: ["已过期", "Expired"],
  pay_closed: ["已关闭", "Closed"],
  pay_refunding: ["退款中", "Refunding"],
  pay_refunded: ["已退款", "Refunded"],
});
function orderStatus(status) { return TEXT.zh["pay_" + status] ? t("pay_" + status) : status; }

function signOut() { token = ""; localStorage.removeItem("shengtu.token"); location.reload(); }

// Sign-in by name and password (Enter in the password field too), sign-out, and a
// remembered token: each console passes what it does once it knows its user.
function setupSignIn(enter) {
  $("login").onclick = async () => {
    try {
      const d = await api("/user/auth/login", { method: "POST", json: { username: $("username").value, password: $("password").value } });
      token = d.token; localStorage.setItem("shengtu.token", token); enter();
    } catch (e) { say("login-msg", e.message, false); }
  };
  $("password").onkeydown = (ev) => { if (ev.key === "Enter") $("login").click(); };
  $("logout").onclick = signOut;
  if (token) enter();
}
