// The user console: sign in, create pictures, follow them live, points, top-ups (topup.js),
// keys, usage.
"use strict";

words({
  operatorConsole: ["运营后台", "Operator console"],
  signIn: ["登录", "Sign in"],
  signUp: ["注册新用户", "Sign up"],
  username: ["用户名", "User name"],
  password: ["密码", "Password"],
  inviteCode: ["邀请码(注册时可选)", "Invitation code (sign-up, optional)"],
  pasteToken: ["或粘贴 Token / API Key", "Or paste a token / API key"],
  registered: ["注册成功,请登录", "Signed up: please sign in"],
  create: ["创作", "Create"],
  pointsTab: ["积分", "Points"],
  usage: ["用量", "Usage"],
  balance: ["积分余额", "Balance"],
  newTask: ["新建任务", "New picture"],
  model: ["模型", "Model"],
  prompt: ["提示词", "Prompt"],
  promptHint: ["一只可爱的柴犬", "A cute shiba inu"],
  references: ["参考图", "Reference images"],
  dropHint: ["把图片拖到这里,或按回车选择文件", "Drop pictures here, or press Enter to choose files"],
  refUrls: ["参考图 URL(多张用换行分隔)", "Reference URLs (one per line)"],
  submit: ["提交", "Submit"],
  submitted: ["已提交:", "Submitted: "],
  uploaded: ["参考图已上传", "Reference uploaded"],
  uploading: ["正在上传…", "Uploading…"],
  remove: ["移除", "Remove"],
  myTasks: ["我的任务", "My pictures"],
  status: ["状态", "Status"],
  type: ["类型", "Type"],
  all: ["全部", "All"],
  t2i: ["文生图", "Text to image"],
  i2i: ["图生图", "Image to image"],
  view: ["查看大图", "View"],
  cancel: ["取消", "Cancel"],
  download: ["下载", "Download"],
  copyLink: ["复制链接", "Copy link"],
  copied: ["已复制", "Copied"],
  copy: ["复制", "Copy"],
  wsOn: ["· 实时推送已连接", "· live updates on"],
  wsOff: ["· 推送已断开", "· live updates off"],
  wsRetry: ["· 推送已断开,重连中…", "· live updates lost, reconnecting…"],
  refunded: ["积分已退还", "points refunded"],
  redeem: ["兑换码充值", "Redeem a code"],
  code: ["兑换码", "Code"],
  redeemIt: ["兑换", "Redeem"],
  redeemed: ["兑换成功:+{0} 积分", "Redeemed: +{0} points"],
  ledger: ["积分流水", "Points ledger"],
  time: ["时间", "Time"],
  change: ["变动", "Change"],
  after: ["余额", "Balance"],
  kind: ["类型", "Kind"],
  note: ["备注", "Note"],
  task: ["任务", "Task"],
  newKey: ["新建 API Key", "New API key"],
  name: ["名称", "Name"],
  quota: ["积分额度(留空为不限)", "Points quota (empty: none)"],
  expiry: ["有效期至(留空为永久)", "Expires (empty: never)"],
  allowedModels: ["允许的模型(不选为全部)", "Allowed models (none selected: all)"],
  allowedCidrs: ["允许的来源地址 CIDR(逗号分隔,留空为不限)", "Allowed client networks, CIDR (comma-separated; empty: any)"],
  keyOnce: ["请立即保存,这个 Key 只显示这一次:", "Save it now: this key is shown only once:"],
  myKeys: ["我的 API Keys", "My API keys"],
  prefix: ["前缀", "Prefix"],
  spent: ["已用 / 额度", "Spent / quota"],
  expires: ["到期", "Expires"],
  models: ["模型", "Models"],
  networks: ["来源", "Networks"],
  lastUsed: ["最近使用", "Last used"],
  revoke: ["吊销", "Revoke"],
  revoked: ["已吊销", "Revoked"],
  unlimited: ["不限", "any"],
  never: ["永久", "never"],
  usagePerDay: ["近 30 天每日用量", "Usage per day, last 30 days"],
  pointsPerDay: ["每日消耗积分", "Points spent per day"],
  tasksPerDay: ["每日任务数", "Pictures per day"],
  date: ["日期", "Date"],
  tasks: ["任务数", "Tasks"],
  failedCount: ["失败", "Failed"],
  pictures: ["张数", "Pictures"],
  size: ["尺寸", "Size"],
  aspectRatio: ["宽高比", "Aspect ratio"],
  resolution: ["分辨率", "Resolution"],
  quality: ["质量", "Quality"],
  price: ["价格:", "Price: "],
  priceEach: ["(每张 {0} × {1} 张)", "({0} each × {1})"],
  unaffordable: ["· 余额不足", "· more than your balance"],
  asked: ["共 {0} 张", "{0} pictures"],
  delivered: ["交付 {0} / {1} 张", "{0} of {1} pictures delivered"],
  charged: ["扣 {0} 积分", "{0} points charged"],
  refundedPoints: ["退还 {0} 积分", "{0} points refunded"],
  nth: ["第 {0} 张", "Picture {0}"],
});

let models = [];
let me = null;
let wsState = "";  // the key of the live-update state shown
let taskPage = 1;
let references = [];  // uploaded reference URLs, shown as previews
let lastQuote = null;  // the price shown beside the submit button

async function enter() {
  try {
    me = await api("/user/auth/me");
    $("who").textContent = t("currentUser") + me.username;
    $("to-admin").classList.toggle("hidden", me.role !== "admin");
    $("login-box").classList.add("hidden");
    ["app", "logout"].forEach(i => $(i).classList.remove("hidden"));
    models = await api("/user/ai/models");
    renderWords();
    $("key-models").replaceChildren(...models.map(m => el("option", { value: m.modelName }, m.modelName)));
    onModel();
    await refreshBalance();
    await loadTasks(1);
    connect();
    await resumeTopup();
  } catch (e) {
    token = ""; localStorage.removeItem("shengtu.token");
    say("login-msg", e.message, false);
  }
}
// What this script writes in the page's language, written again when it changes.
function renderWords() {
  if (me) $("who").textContent = t("currentUser") + me.username;
  const chosen = $("model").value;
  $("model").replaceChildren(...models.map(m =>
    el("option", { value: m.modelName }, `${m.description} · ${m.pointsCost} ${t("points")}`)));
  if (chosen) $("model").value = chosen;
  $("ws-state").textContent = wsState ? t(wsState[0]) + wsState[1] : "";
  if (lastQuote) showPrice(lastQuote);
}
function showWs(key, why = "") { wsState = [key, why]; $("ws-state").textContent = t(key) + why; }

async function refreshBalance() {
  const b = await api("/user/points/consumption/balance");
  $("balance").textContent = b.balance + " " + t("points");
  $("topup-balance").textContent = b.balance + " " + t("points");
}
function currentModel() { return models.find(x => x.modelName === $("model").value); }
function onModel() {
  const m = currentModel();
  $("ref-box").classList.toggle("hidden", !(m && ["image_to_image", "both"].includes(m.taskType)));
  renderChoices(m);
  requestQuote();
}

// --- The model's options and their price, quoted by the server as they change. ---------------
// One select per choice the model offers (its default chosen) and one for the pictures.
function renderChoices(m) {
  const params = (m && m.parameters) || {};
  $("choices").replaceChildren(...Object.entries(params.choices || {}).map(([name, c]) => {
    const id = "param-" + name;
    const select = el("select", { id, "data-param": name, onchange: requestQuote },
      c.values.map(v => el("option", { value: v }, v)));
    select.value = c.default ?? c.values[0];
    return el("div", {}, el("label", { for: id, "data-i18n": name }, t(name)), select);
  }));
  const most = params.maxN || 1;
  $("n").replaceChildren(...Array.from({ length: most }, (_, i) => el("option", { value: i + 1 }, String(i + 1))));
  $("n").value = "1";
  $("n-box").classList.toggle("hidden", most <= 1);
}
function chosenParameters() {
  const out = {};
  document.querySelectorAll("#choices select[data-param]").forEach(s => { out[s.dataset.param] = s.value; });
  return out;
}
function typedReferences() { return $("ref").value.split("\n").map(s => s.trim()).filter(Boolean); }
function referenceCount() {
  return $("ref-box").classList.contains("hidden") ? 0 : references.length + typedReferences().length;
}
// What a submit sends beside the prompt and the references: the spec's body for a model
// with nothing to choose.
function options(body) {
  const params = chosenParameters();
  if (Object.keys(params).length) body.parameters = params;
  const n = Number($("n").value) || 1;
  if (n > 1) body.n = n;
  return body;
}
let quoteTimer = null, quoteSeq = 0;
function requestQuote() { clearTimeout(quoteTimer); quoteTimer = setTimeout(loadQuote, 120); }
async function loadQuote() {
  const m = currentModel();
  const seq = ++quoteSeq;  // only the answer to the latest question is shown
  if (!m) { lastQuote = null; $("price").textContent = ""; return; }
  try {
    const q = await api("/user/ai/quote", { method: "POST", json: options({ modelName: m.modelName, references: referenceCount() }) });
    if (seq === quoteSeq) showPrice(q);
  } catch (e) {
    if (seq !== quoteSeq) return;
    lastQuote = null;
    $("price").removeAttribute("data-total");
    $("price").textContent = e.message; $("price").className = "price bad";
  }
}
function showPrice(q) {
  lastQuote = q;
  const parts = [t("price") + q.total + " " + t("points")];
  if (q.n > 1) parts.push(t("priceEach", q.each, q.n));
  if (!q.affordable) parts.push(t("unaffordable"));
  $("price").textContent = parts.join(" ");
  $("price").className = "price" + (q.affordable ? "" : " bad");
  $("price").dataset.total = q.total;
}

// --- Tasks: a gallery that the WebSocket keeps current. ----------------------------------
const shown = new Map();  // taskNo → task, for the large view
function thumbnail(t_) {
  const url = t_.resultUrl ? safeUrl(t_.resultUrl) : null;
  if (url) {
    return el("button", { class: "thumb-button", type: "button", "aria-label": t("view") + " " + t_.taskNo, onclick: () => openViewer(t_.taskNo) },
      el("img", { class: "thumb", src: url, alt: t_.promptSnippet }));
  }
  return el("div", { class: "thumb" }, statusText(t_.status));
}
function matchesFilter(t_) {
  const s = $("filter-status").value, ty = $("filter-type").value;
  return (!s || t_.status === s) && (!ty || t_.taskType === ty);
}
function upsert(t_) {
  shown.set(t_.taskNo, t_);
  const id = "t-" + t_.taskNo;
  let row = document.getElementById(id);
  if (!matchesFilter(t_)) { if (row) row.remove(); return; }
  if (!row) { row = el("article", { id }); $("tasks").prepend(row); }
  row.className = "task status-" + t_.status;
  const progress = t_.status === "failed" ? 100 : Number(t_.progress) || 0;
  const fill = el("div");
  fill.style.width = progress + "%";
  const actions = [];
  if (t_.resultUrl && safeUrl(t_.resultUrl)) {
    actions.push(el("button", { type: "button", class: "link", onclick: () => openViewer(t_.taskNo) }, t("view")));
  }
  (t_.resultUrls || []).slice(1).forEach((url, i) => {
    if (safeUrl(url)) actions.push(el("button", { type: "button", class: "link", onclick: () => openViewer(t_.taskNo, i + 1) }, t("nth", i + 2)));
  });
  if (["created", "queued", "processing"].includes(t_.status)) {
    actions.push(el("button", { type: "button", class: "link", onclick: () => cancelTask(t_.taskNo) }, t("cancel")));
  }
  row.replaceChildren(
    thumbnail(t_),
    el("div", {},
      el("div", { class: "prompt" }, t_.promptSnippet),
      el("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": progress, "aria-label": t_.taskNo }, fill),
      el("div", { class: "meta" },
        `${t_.taskNo} · ${t_.modelName} · ${statusText(t_.status)} ${t_.progress}% · ${t_.createTime}`),
      el("div", { class: "meta choices-made" }, taskChoices(t_)),
      t_.errorMessage ? el("div", { class: "err" }, t_.errorMessage) : null,
      t_.status === "failed" ? el("div", { class: "meta refund" }, `${t_.pointsCost} ${t("points")} · ${t("refunded")}`) : null,
      t_.status === "completed" && t_.pointsRefunded > 0 ? el("div", { class: "meta refund" }, t("refundedPoints", t_.pointsRefunded)) : null,
      actions.length ? el("div", { class: "row" }, actions) : null));
}
// The values a task was made with, its pictures and its charge: "1024x1536 · high · 交付 2 / 3 张 · 扣 828 积分".
function taskChoices(t_) {
  const made = Object.entries(t_.parameters || {})
    .filter(([k]) => !["n", "references", "extra"].includes(k)).map(([, v]) => String(v));
  const pictures = t_.pictures || 1;
  if (t_.status === "completed" && t_.delivered !== null && t_.delivered !== undefined && pictures > 1) made.push(t("delivered", t_.delivered, pictures));
  else if (pictures > 1) made.push(t("asked", pictures));
  made.push(t("charged", t_.pointsCost));
  return made.join(" · ");
}
async function loadTasks(page) {
  taskPage = page;
  const data = await api("/user/ai/tasks/list?" + query({ page, size: 12, status: $("filter-status").value, taskType: $("filter-type").value }));
  $("tasks").replaceChildren();
  data.records.slice().reverse().forEach(upsert);
  $("tasks-pager").replaceChildren(pager(data, loadTasks));
}
async function cancelTask(taskNo) {
  try { upsert(await api(`/user/ai/tasks/${encodeURIComponent(taskNo)}/cancel`, { method: "POST" })); await refreshBalance(); }
  catch (e) { say("submit-msg", e.message, false); }
}
function openViewer(taskNo, index = 0) {
  const t_ = shown.get(taskNo);
  const url = t_ && safeUrl(index ? (t_.resultUrls || [])[index] : t_.resultUrl);
  if (!url) return;
  $("viewer-title").textContent = t_.taskNo;
  $("viewer-img").src = url;
  $("viewer-img").alt = t_.promptSnippet;
  $("viewer-prompt").textContent = t_.promptSnippet;
  $("viewer-download").href = url;
  $("viewer-download").setAttribute("download", t_.taskNo + (index ? `-${index + 1}` : "") + ".png");
  $("viewer-msg").textContent = "";
  $("viewer").showModal();
}
$("viewer-close").onclick = () => $("viewer").close();
$("viewer-copy").onclick = async () => {
  try { await navigator.clipboard.writeText($("viewer-download").href); say("viewer-msg", t("copied"), true); }
  catch (e) { say("viewer-msg", $("viewer-download").href, true); }
};

let ws;
function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  // The events say why a task failed in the console's language, whatever the browser's.
  ws = new WebSocket(`${proto}://${location.host}/ws/tasks?token=${encodeURIComponent(token)}&lang=${lang}`);
  ws.onopen = () => showWs("wsOn");
  ws.onclose = (ev) => {
    const why = ev.reason ? `(${ev.reason})` : "";
    if (ev.code === 4401) { showWs("wsOff", why); return; }
    showWs("wsRetry", why);
    if (token) setTimeout(connect, 2000);
  };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.event === "task.updated" || msg.event === "task.late_result") {
      upsert(msg.data);
      if (["completed", "failed"].includes(msg.data.status)) refreshBalance();
    }
  };
}

// A new language: a socket in it (the old one's close is not a drop to report).
function reopen() {
  if (!ws) return;
  ws.onclose = null; ws.close(); connect();
}

// --- Reference uploads: drag and drop, or the file picker; previews with a remove. -----------
async function upload(files) {
  for (const f of files) {
    say("submit-msg", t("uploading"), true);
    const form = new FormData(); form.append("file", f);
    try {
      const d = await api("/user/files/upload", { method: "POST", body: form });
      references.push(d.url);
      renderPreviews();
      say("submit-msg", t("uploaded"), true);
    } catch (e) { say("submit-msg", e.message, false); }
  }
}
function renderPreviews() {
  requestQuote();
  $("previews").replaceChildren(...references.map((url, i) => el("figure", { class: "preview" },
    el("img", { src: safeUrl(url) || "", alt: t("references") + " " + (i + 1) }),
    el("button", { type: "button", class: "link", onclick: () => { references.splice(i, 1); renderPreviews(); } }, t("remove")))));
}
const drop = $("drop");
drop.onclick = () => $("ref-file").click();
drop.onkeydown = (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); $("ref-file").click(); } };
drop.ondragover = (ev) => { ev.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = (ev) => { ev.preventDefault(); drop.classList.remove("over"); upload(Array.from(ev.dataTransfer.files)); };
$("ref-file").onchange = () => { upload(Array.from($("ref-file").files)); $("ref-file").value = ""; };

$("submit").onclick = async () => {
  const refs = references.concat(typedReferences());
  const body = options({ modelName: $("model").value, prompt: $("prompt").value });
  if (!$("ref-box").classList.contains("hidden")) body.imageUrl = refs.length > 1 ? JSON.stringify(refs) : (refs[0] || null);
  $("submit").disabled = true;
  try {
    const created = await api("/user/ai/tasks/submit", { method: "POST", json: body });
    upsert(created); say("submit-msg", t("submitted") + created.taskNo, true); refreshBalance(); requestQuote();
    references = []; renderPreviews();
  } catch (e) {
    say("submit-msg", e.message, false);
    if (e.data && e.data.blocked) refusePrompt();
  }
  finally { $("submit").disabled = false; }
};
// A prompt the word lists refused: the server's message says which words; the prompt stays
// as written, marked and focused, to be changed and sent again.
function refusePrompt() {
  $("prompt").setAttribute("aria-invalid", "true");
  $("prompt").setAttribute("aria-describedby", "submit-msg");
  $("prompt").focus();
}
$("prompt").addEventListener("input", () => { $("prompt").removeAttribute("aria-invalid"); $("prompt").removeAttribute("aria-describedby"); });

// --- Points: redeem and the ledger. ------------------------------------------------------------
async function loadLedger(page) {
  const data = await api("/user/points/consumption/records?" + query({ page, size: 10 }));
  $("ledger").replaceChildren(
    table([
      ["time", r => when(r.createTime)],
      ["change", r => (r.delta > 0 ? "+" : "") + r.delta],
      ["after", r => r.balanceAfter],
      ["kind", r => r.kind],
      ["task", r => r.taskNo || ""],
      ["note", r => r.note || ""],
    ], data.records),
    pager(data, loadLedger));
}
$("redeem").onclick = async () => {
  try {
    const d = await api("/user/points/redeem", { method: "POST", json: { code: $("redeem-code").value.trim() } });
    say("redeem-msg", t("redeemed", d.points), true);
    $("redeem-code").value = "";
    await refreshBalance(); await loadLedger(1);
  } catch (e) { say("redeem-msg", e.message, false); }
};

// --- API keys: made with their controls, shown once, revoked. ---------------------------------
async function loadKeys() {
  const keys = await api("/user/api-keys");
  $("keys").replaceChildren(table([
    ["name", k => k.name],
    ["prefix", k => k.prefix + "…"],
    ["spent", k => `${k.spentPoints} / ${k.quotaPoints ?? t("unlimited")}`],
    ["expires", k => k.expireTime || t("never")],
    ["models", k => (k.allowedModels || []).join(", ") || t("unlimited")],
    ["networks", k => (k.allowedCidrs || []).join(", ") || t("unlimited")],
    ["lastUsed", k => k.lastUsedTime || "—"],
    ["", k => el("button", { type: "button", class: "link danger", "data-key": k.id, onclick: () => revokeKey(k.id) }, t("revoke"))],
  ], keys));
}
async function revokeKey(id) {
  if (!confirm(t("confirm"))) return;
  try { await api(`/user/api-keys/${id}`, { method: "DELETE" }); say("key-msg", t("revoked"), true); await loadKeys(); }
  catch (e) { say("key-msg", e.message, false); }
}
$("key-create").onclick = async () => {
  const body = { name: $("key-name").value.trim() || "default" };
  if ($("key-quota").value) body.quotaPoints = Number($("key-quota").value);
  if ($("key-expire").value) body.expireTime = $("key-expire").value;
  const chosen = Array.from($("key-models").selectedOptions).map(o => o.value);
  if (chosen.length) body.allowedModels = chosen;
  const cidrs = $("key-cidrs").value.split(",").map(s => s.trim()).filter(Boolean);
  if (cidrs.length) body.allowedCidrs = cidrs;
  try {
    const made = await api("/user/api-keys", { method: "POST", json: body });
    $("key-raw").textContent = made.key;
    $("key-shown").classList.remove("hidden");
    say("key-msg", "", true);
    await loadKeys();
  } catch (e) { say("key-msg", e.message, false); }
};
$("key-copy").onclick = () => navigator.clipboard.writeText($("key-raw").textContent).catch(() => {});

// --- Usage per day. ------------------------------------------------------------------------------
async function loadUsage() {
  const days = await api("/user/usage?days=30");
  $("usage").replaceChildren(
    barChart(days.map(d => ({ label: d.date.slice(5), value: d.points })), t("pointsPerDay")),
    table([["date", d => d.date], ["tasks", d => d.tasks], ["completed", d => d.completed], ["failedCount", d => d.failed], ["pointsTab", d => d.points]],
      days.filter(d => d.tasks).reverse()));
}

const showTab = setupTabs($("tabs"), (panel) => {
  // A new key is shown once: leaving the tab forgets it.
  $("key-shown").classList.add("hidden");
  $("key-raw").textContent = "";
  if (panel === "panel-points") loadLedger(1);
  if (panel === "panel-keys") loadKeys();
  if (panel === "panel-usage") loadUsage();
  if (panel === "panel-topup") loadTopup().catch(e => say("topup-msg", e.message, false));
});
setupLanguage(() => {
  if (!token || $("app").classList.contains("hidden")) return;
  renderWords(); refreshBalance(); loadTasks(taskPage); reopen();
  relabelTopup();
});
$("model").onchange = onModel;
$("n").onchange = requestQuote;
$("ref").oninput = requestQuote;
$("filter-status").onchange = () => loadTasks(1);
$("filter-type").onchange = () => loadTasks(1);
$("register").onclick = async () => {
  const body = { username: $("username").value, password: $("password").value };
  if ($("invite").value.trim()) body.code = $("invite").value.trim();
  try {
    await api("/user/auth/register", { method: "POST", json: body });
    say("login-msg", t("registered"), true);
  } catch (e) { say("login-msg", e.message, false); }
};
$("token").onchange = () => { token = $("token").value.trim(); localStorage.setItem("shengtu.token", token); enter(); };
setupSignIn(enter);
