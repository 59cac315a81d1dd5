// The user console. Every value from the server or a user (names, prompts, model
// descriptions, errors) goes into the page as text: no innerHTML, ever.
"use strict";

const $ = (id) => document.getElementById(id);
// No login by link: a #token= URL would log a victim into whatever account it names.
let token = localStorage.getItem("shengtu.token") || "";
let models = [];

// el("div", {class: "x"}, "text", child): an element whose strings are text nodes.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children) {
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
  const headers = Object.assign({}, options.headers || {});
  if (token) headers["Authorization"] = "Bearer " + token;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const res = await fetch(path, Object.assign({}, options, { headers }));
  const body = await res.json().catch(() => ({ code: res.status, message: "服务器返回了无法解析的内容" }));
  if (body.code !== 200) { const e = new Error(body.message || "请求失败"); e.code = body.code; throw e; }
  return body.data;
}
function say(id, text, ok) { const node = $(id); node.textContent = text; node.className = "msg " + (ok ? "ok" : "bad"); }

async function enter() {
  try {
    const me = await api("/user/auth/me");
    $("who").textContent = "当前用户:" + me.username;
    $("login-box").classList.add("hidden");
    ["submit-box", "tasks-box", "logout"].forEach(i => $(i).classList.remove("hidden"));
    models = await api("/user/ai/models");
    $("model").replaceChildren(...models.map(m =>
      el("option", { value: m.modelName }, `${m.description} · ${m.pointsCost} 积分`)));
    onModel();
    await refreshBalance();
    const page = await api("/user/ai/tasks/list?page=1&size=20");
    page.records.reverse().forEach(upsert);
    connect();
  } catch (e) {
    token = ""; localStorage.removeItem("shengtu.token");
    say("login-msg", e.message, false);
  }
}
async function refreshBalance() {
  const b = await api("/user/points/consumption/balance");
  $("balance").textContent = b.balance + " 积分";
}
function onModel() {
  const m = models.find(x => x.modelName === $("model").value);
  $("ref-box").classList.toggle("hidden", !(m && m.taskType === "image_to_image"));
}
const STATUS = { created: "已创建", queued: "排队中", processing: "生成中", completed: "已完成", failed: "失败" };

function thumbnail(t) {
  const url = t.resultUrl ? safeUrl(t.resultUrl) : null;
  if (url) {
    return el("a", { href: url, target: "_blank", rel: "noopener noreferrer" },
      el("img", { class: "thumb", src: url, alt: "结果" }));
  }
  return el("div", { class: "thumb" }, STATUS[t.status] || t.status);
}
function upsert(t) {
  const id = "t-" + t.taskNo;
  let row = document.getElementById(id);
  if (!row) { row = el("div", { id }); $("tasks").prepend(row); }
  row.className = "task status-" + t.status;
  const fill = el("div");
  fill.style.width = (t.status === "failed" ? 100 : Number(t.progress) || 0) + "%";
  row.replaceChildren(
    thumbnail(t),
    el("div", {},
      el("div", { class: "prompt" }, t.promptSnippet),
      el("div", { class: "bar" }, fill),
      el("div", { class: "meta" },
        `${t.taskNo} · ${t.modelName} · ${STATUS[t.status] || t.status} ${t.progress}% · ${t.createTime}`),
      t.errorMessage ? el("div", { class: "err" }, t.errorMessage) : null));
}
let ws;
function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${proto}://${location.host}/ws/tasks?token=${encodeURIComponent(token)}`);
  ws.onopen = () => { $("ws-state").textContent = "· 实时推送已连接"; };
  ws.onclose = (ev) => {
    const why = ev.reason ? `(${ev.reason})` : "";
    if (ev.code === 4401) { $("ws-state").textContent = "· 推送已断开" + why; return; }
    $("ws-state").textContent = "· 推送已断开,重连中…" + why;
    if (token) setTimeout(connect, 2000);
  };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.event === "task.updated") {
      upsert(msg.data);
      if (["completed", "failed"].includes(msg.data.status)) refreshBalance();
    }
  };
}
$("model").onchange = onModel;
$("login").onclick = async () => {
  try {
    const d = await api("/user/auth/login", { method: "POST", json: { username: $("username").value, password: $("password").value } });
    token = d.token; localStorage.setItem("shengtu.token", token); enter();
  } catch (e) { say("login-msg", e.message, false); }
};
$("register").onclick = async () => {
  try {
    await api("/user/auth/register", { method: "POST", json: { username: $("username").value, password: $("password").value } });
    say("login-msg", "注册成功,请登录", true);
  } catch (e) { say("login-msg", e.message, false); }
};
$("token").onchange = () => { token = $("token").value.trim(); localStorage.setItem("shengtu.token", token); enter(); };
$("logout").onclick = () => { token = ""; localStorage.removeItem("shengtu.token"); location.reload(); };
$("ref-file").onchange = async () => {
  const f = $("ref-file").files[0]; if (!f) return;
  const form = new FormData(); form.append("file", f);
  try {
    const d = await api("/user/files/upload", { method: "POST", body: form });
    $("ref").value = ($("ref").value.trim() + "\n" + d.url).trim();
    say("submit-msg", "参考图已上传", true);
  } catch (e) { say("submit-msg", e.message, false); }
};
$("submit").onclick = async () => {
  const refs = $("ref").value.split("\n").map(s => s.trim()).filter(Boolean);
  const body = { modelName: $("model").value, prompt: $("prompt").value };
  if (!$("ref-box").classList.contains("hidden")) body.imageUrl = refs.length > 1 ? JSON.stringify(refs) : (refs[0] || null);
  $("submit").disabled = true;
  try {
    const t = await api("/user/ai/tasks/submit", { method: "POST", json: body });
    upsert(t); say("submit-msg", "已提交:" + t.taskNo, true); refreshBalance();
  } catch (e) { say("submit-msg", e.message, false); }
  finally { $("submit").disabled = false; }
};
if (token) enter();
