// The operator console: every screen is a view of an /admin API (the 支付 page's in admin-pay.js).
"use strict";

words({
  title: ["生图 运营后台", "Shengtu operator console"],
  userConsole: ["用户控制台", "User console"],
  adminSignIn: ["管理员登录", "Operator sign-in"],
  signIn: ["登录", "Sign in"],
  username: ["用户名", "User name"],
  password: ["密码", "Password"],
  notAdmin: ["该账号不是管理员", "This account is not an operator"],
  dashboard: ["概览", "Dashboard"],
  users: ["用户", "Users"],
  tasks: ["任务", "Tasks"],
  channels: ["渠道", "Channels"],
  models: ["模型", "Models"],
  codes: ["兑换码", "Codes"],
  groups: ["分组", "Groups"],
  auditLog: ["审计日志", "Audit log"],
  ledgerAudit: ["账本审计", "Ledger audit"],
  granularity: ["粒度", "Granularity"],
  last24h: ["近 24 小时(按小时)", "Last 24 hours (hourly)"],
  last30d: ["近 30 天(按天)", "Last 30 days (daily)"],
  refresh: ["刷新", "Refresh"],
  trend: ["趋势", "Over time"],
  byModel: ["按模型", "By model"],
  byChannel: ["按渠道", "By channel"],
  topUsers: ["用户排行", "Top users"],
  channelHealth: ["渠道健康", "Channel health"],
  tasksEnded: ["结束任务", "Tasks ended"],
  successRate: ["成功率", "Success rate"],
  netPoints: ["净积分收入", "Net points"],
  revenue: ["收入", "Revenue"],
  cost: ["上游成本", "Upstream cost"],
  margin: ["毛利", "Margin"],
  inFlight: ["进行中", "In flight"],
  p50: ["p50 出图(秒)", "p50 to result (s)"],
  p95: ["p95 出图(秒)", "p95 to result (s)"],
  completed: ["完成", "Completed"],
  failedCount: ["失败", "Failed"],
  charged: ["扣费", "Charged"],
  refunded: ["退款", "Refunded"],
  net: ["净额", "Net"],
  model: ["模型", "Model"],
  channel: ["渠道", "Channel"],
  user: ["用户", "User"],
  time: ["时间", "Time"],
  search: ["搜索", "Search"],
  userQ: ["用户名或 ID", "Name or id"],
  state: ["状态", "State"],
  all: ["全部", "All"],
  active: ["正常", "Active"],
  disabled: ["已停用", "Disabled"],
  role: ["角色", "Role"],
  group: ["分组", "Group"],
  balance: ["余额", "Balance"],
  createTime: ["注册时间", "Created"],
  detail: ["详情", "Details"],
  disable: ["停用", "Disable"],
  enable: ["启用", "Enable"],
  makeAdmin: ["设为管理员", "Make operator"],
  makeUser: ["取消管理员", "Make user"],
  grant: ["发放/扣回积分", "Grant / take back points"],
  amount: ["数量(负数为扣回)", "Amount (negative takes back)"],
  note: ["备注", "Note"],
  apply: ["执行", "Apply"],
  resetPassword: ["重置密码", "Reset password"],
  newPassword: ["新密码", "New password"],
  deleteUser: ["删除用户", "Delete user"],
  moveGroup: ["移到分组", "Move to group"],
  done: ["已完成操作", "Done"],
  taskNo: ["任务号", "Task"],
  prompt: ["提示词", "Prompt"],
  points: ["积分", "Points"],
  error: ["错误", "Error"],
  cancel: ["取消任务", "Cancel task"],
  name: ["名称", "Name"],
  protocol: ["协议", "Protocol"],
  priority: ["优先级", "Priority"],
  keys: ["Key", "Keys"],
  hourRate: ["近 1 小时成功率", "Success, last hour"],
  breaker: ["熔断", "Breaker"],
  addChannel: ["添加渠道", "Add a channel"],
  servesModels: ["服务的模型(每行:模型名=上游模型名)", "Models served (one per line: model=upstream model)"],
  costPerPicture: ["每张成本", "Cost per picture"],
  add: ["添加", "Add"],
  description: ["说明", "Description"],
  price: ["积分", "Points"],
  enabled: ["启用", "Enabled"],
  save: ["保存", "Save"],
  taskType: ["任务类型", "Task type"],
  t2i: ["文生图", "Text to image"],
  i2i: ["图生图", "Image to image"],
  both: ["文生图与图生图", "Both"],
  options: ["参数与定价", "Options and prices"],
  editOptions: ["编辑", "Edit"],
  noOptions: ["固定价格", "One price"],
  parametersJson: ["可选参数(JSON)", "Parameters (JSON)"],
  priceRuleJson: ["价格规则(JSON)", "Price rule (JSON)"],
  ruleHint: ["每张价格 = (取值的固定价 points,否则模型积分)× 各取值的 times + 各取值的 plus + perReference × 参考图数;再乘分组倍率,向上取整。",
    "One picture = (the value's fixed points, else the model's points) × every value's times + every value's plus + perReference × reference images; then × the group multiplier, rounded up."],
  pricePreview: ["每张标价预览(分组倍率前,无参考图)", "Price of one picture (before the group multiplier, no reference image)"],
  listed: ["每张积分", "Points each"],
  perReference: ["每张参考图 +{0} 积分", "+{0} points a reference image"],
  upToN: ["每次最多 {0} 张", "up to {0} pictures a task"],
  moreRows: ["另有 {0} 种组合未列出", "{0} more combinations not shown"],
  badJson: ["{0} 不是合法的 JSON", "{0} is not valid JSON"],
  newBatch: ["生成一批兑换码", "Make a batch of codes"],
  count: ["数量", "Count"],
  pointsEach: ["每个积分", "Points each"],
  expiry: ["有效期至(留空为永久)", "Expires (empty: never)"],
  create: ["生成", "Create"],
  batch: ["批次", "Batch"],
  unused: ["未使用", "Unused"],
  used: ["已使用", "Used"],
  expired: ["已过期", "Expired"],
  disableBatch: ["停用该批次", "Disable this batch"],
  exportCsv: ["导出 CSV", "Export CSV"],
  code: ["兑换码", "Code"],
  usedBy: ["使用者", "Used by"],
  newGroup: ["新建分组", "New group"],
  multiplier: ["价格倍率", "Price multiplier"],
  members: ["用户数", "Users"],
  roundingRule: ["扣费 = ⌈模型积分 × 倍率⌉(向上取整)", "Charge = ⌈model points × multiplier⌉ (rounded up)"],
  actor: ["操作人", "Who"],
  action: ["操作", "Action"],
  target: ["对象", "On"],
  before: ["之前", "Before"],
  after: ["之后", "After"],
  runAudit: ["运行账本审计", "Run the ledger audit"],
  check: ["检查项", "Check"],
  checked: ["检查数", "Checked"],
  violations: ["违反", "Violations"],
  pass: ["通过", "Pass"],
  fail: ["违反", "Fail"],
  madeCodes: ["已生成 {0} 个兑换码(批次 {1}):", "Made {0} codes (batch {1}):"],
  attempts: ["上游尝试", "Upstream attempts"],
  outcome: ["结果", "Outcome"],
  exchanges: ["上游往来记录", "Upstream exchanges"],
  exchangeHint: ["发给上游的请求(密钥与签名已隐去)和上游的回答,仅运营可见;超长内容已截断,图片只记大小。",
    "The requests sent upstream (keys and signatures masked) and the upstream's answers, seen by operators only; long bodies are cut, pictures kept as their size."],
  exchangeShown: ["共 {0} 条,此处显示最早与最近的 {1} 条", "{0} in all: the first and the last {1} shown"],
  noExchanges: ["没有保存的往来记录(可能已过保存期限)", "No exchange kept (they may be past their keeping)"],
  step_submit: ["提交", "Submit"],
  step_poll: ["查询", "Poll"],
  step_cancel: ["取消", "Cancel"],
  step_late_poll: ["超时后查询", "Late poll"],
  step_download: ["下载结果", "Result download"],
  requestHeaders: ["请求头", "Request headers"],
  requestBody: ["请求内容", "Request body"],
  responseHeaders: ["回答头", "Answer headers"],
  responseBody: ["回答内容", "Answer body"],
  noAnswer: ["无回答", "no answer"],
  repeated: ["相同回答又出现 {0} 次,最后一次 {1}", "the same answer {0} more times, last at {1}"],
  ledger: ["积分流水", "Ledger"],
});

let stats = null;
let adminName = "";

async function enter() {
  try {
    const me = await api("/user/auth/me");
    if (me.role !== "admin") throw new Error(t("notAdmin"));
    adminName = me.username;
    $("who").textContent = t("currentUser") + adminName;
    $("login-box").classList.add("hidden");
    ["app", "logout"].forEach(i => $(i).classList.remove("hidden"));
    await loadDashboard();
  } catch (e) {
    say("login-msg", e.message, false);
  }
}
const fmtRate = (r) => r === null || r === undefined ? "—" : (r * 100).toFixed(1) + "%";
const fmtNum = (n) => n === null || n === undefined ? "—" : String(n);
// Revenue, cost and margin (decimals the API gives to 4 places): 2 places at least, the
// others only where they count.
const fmtAmount = (v) => {
  const n = Number(v);
  return v === null || v === undefined || !Number.isFinite(n) ? "—"
    : n.toLocaleString(lang === "en" ? "en" : "zh-CN", { minimumFractionDigits: 2, maximumFractionDigits: 4 });
};

// --- Dashboard ------------------------------------------------------------------------------------
async function loadDashboard() {
  stats = await api("/admin/stats?" + query({ granularity: $("stats-granularity").value }));
  const s = stats.totals;
  const card = (key, value, id) => el("div", { class: "card", id }, el("div", { class: "meta" }, t(key)), el("div", { class: "figure" }, value));
  $("cards").replaceChildren(
    card("tasksEnded", s.tasks, "card-tasks"), card("successRate", fmtRate(s.successRate), "card-rate"),
    card("netPoints", s.net, "card-net"), card("revenue", fmtAmount(s.revenue), "card-revenue"),
    card("cost", fmtAmount(s.cost), "card-cost"), card("margin", fmtAmount(s.margin), "card-margin"),
    card("inFlight", stats.inFlight, "card-inflight"), card("p95", fmtNum(s.p95Seconds), "card-p95"),
    stats.paidRevenue ? card("paidRevenue", money(stats.paidRevenue.amount, stats.paidRevenue.currency), "card-paid") : "");
  $("trend").replaceChildren(barChart(stats.series.map(r => ({ label: r.time.slice(5), value: r.tasks })), t("tasksEnded")));
  const figures = [
    ["completed", r => r.completed], ["failedCount", r => r.failed], ["successRate", r => fmtRate(r.successRate)],
    ["charged", r => r.charged], ["refunded", r => r.refunded], ["net", r => r.net], ["cost", r => fmtAmount(r.cost)], ["margin", r => fmtAmount(r.margin)],
    ["p50", r => fmtNum(r.p50Seconds)], ["p95", r => fmtNum(r.p95Seconds)],
  ];
  $("by-model").replaceChildren(table([["model", r => r.model], ...figures], stats.byModel));
  $("by-channel").replaceChildren(table([["channel", r => r.channelName], ...figures], stats.byChannel));
  $("top-users").replaceChildren(table([["user", r => r.username || "#" + r.userId], ["completed", r => r.completed], ["failedCount", r => r.failed], ["net", r => r.net]], stats.topUsers));
  const channels = await api("/admin/channels");
  $("health").replaceChildren(table([
    ["channel", c => c.name], ["enabled", c => c.enabled ? "✓" : "✗"], ["hourRate", c => fmtRate(c.lastHour.successRate)],
    ["breaker", c => c.keys.map(k => k.breaker).join(" / ")],
  ], channels));
}

// --- Users ----------------------------------------------------------------------------------------
async function loadUsers(page) {
  const data = await api("/admin/users?" + query({ page, size: 20, q: $("user-q").value.trim(), active: $("user-active").value }));
  $("users").replaceChildren(table([
    ["user", u => u.username], ["role", u => u.role], ["group", u => u.group],
    ["state", u => u.active ? t("active") : t("disabled")], ["balance", u => u.balance], ["createTime", u => when(u.createTime)],
    ["", u => el("button", { type: "button", class: "link", "data-user": u.userId, onclick: () => showUser(u.userId) }, t("detail"))],
  ], data.records), pager(data, loadUsers));
}
async function userAction(fn) {
  try { await fn(); say("user-msg", t("done"), true); } catch (e) { say("user-msg", e.message, false); }
}
async function showUser(id) {
  const u = await api(`/admin/users/${id}`);
  const groups = await api("/admin/groups");
  const box = $("user-detail");
  const amount = el("input", { id: "grant-amount", type: "number" });
  const note = el("input", { id: "grant-note" });
  const password = el("input", { id: "reset-password", type: "password", autocomplete: "new-password" });
  const group = el("select", { id: "user-group" }, groups.map(g => el("option", { value: g.name, selected: g.name === u.group }, `${g.name} ×${g.multiplier}`)));
  const refresh = async () => { await showUser(id); await loadUsers(1); };
  box.replaceChildren(
    el("h2", {}, u.username, " ", el("span", { class: "meta" }, `#${u.userId} · ${u.role} · ${u.group} · ${t("balance")} ${u.balance}`)),
    el("div", { class: "row" },
      el("button", { type: "button", id: "user-toggle", onclick: () => userAction(async () => { await api(`/admin/users/${id}`, { method: "PUT", json: { active: !u.active } }); await refresh(); }) }, u.active ? t("disable") : t("enable")),
      el("button", { type: "button", class: "link", id: "user-role", onclick: () => userAction(async () => { await api(`/admin/users/${id}`, { method: "PUT", json: { role: u.role === "admin" ? "user" : "admin" } }); await refresh(); }) }, u.role === "admin" ? t("makeUser") : t("makeAdmin")),
      el("button", { type: "button", class: "link danger", id: "user-delete", onclick: () => confirm(t("confirm")) && userAction(async () => { await api(`/admin/users/${id}`, { method: "DELETE" }); box.classList.add("hidden"); await loadUsers(1); }) }, t("deleteUser"))),
    el("div", { class: "form-row" },
      el("label", { for: "user-group" }, t("moveGroup")), group,
      el("button", { type: "button", class: "link", id: "user-group-apply", onclick: () => userAction(async () => { await api(`/admin/users/${id}`, { method: "PUT", json: { group: group.value } }); await refresh(); }) }, t("apply"))),
    el("div", { class: "form-row" },
      el("label", { for: "grant-amount" }, t("amount")), amount,
      el("label", { for: "grant-note" }, t("note")), note,
      el("button", { type: "button", id: "grant-apply", onclick: () => userAction(async () => { await api(`/admin/users/${id}/points`, { method: "POST", json: { amount: Number(amount.value), note: note.value || null } }); await refresh(); }) }, t("grant"))),
    el("div", { class: "form-row" },
      el("label", { for: "reset-password" }, t("newPassword")), password,
      el("button", { type: "button", class: "link", id: "reset-apply", onclick: () => userAction(async () => { await api(`/admin/users/${id}/password`, { method: "POST", json: { password: password.value } }); password.value = ""; }) }, t("resetPassword"))),
    el("h3", {}, t("tasks")),
    table([["taskNo", r => r.taskNo], ["model", r => r.modelName], ["state", r => r.status], ["prompt", r => r.promptSnippet], ["error", r => r.errorMessage || ""]], u.recentTasks),
    el("h3", {}, "API Keys"),
    table([["name", k => k.name], ["", k => k.prefix + "…"], ["charged", k => `${k.spentPoints} / ${k.quotaPoints ?? "∞"}`]], u.apiKeys),
    el("h3", {}, t("points")),
    table([["time", r => when(r.createTime)], ["net", r => r.delta], ["balance", r => r.balanceAfter], ["action", r => r.kind], ["note", r => r.note || ""]], u.recentLedger));
  box.classList.remove("hidden");
}

// --- Tasks ------------------------------------------------------------------------------------------
async function loadTasks(page) {
  const data = await api("/admin/tasks?" + query({ page, size: 20, taskNo: $("task-q").value.trim(), username: $("task-user").value.trim(), status: $("task-status").value }));
  $("admin-tasks").replaceChildren(table([
    ["taskNo", r => r.taskNo], ["user", r => r.username || "#" + r.userId], ["model", r => r.modelName], ["state", r => r.status],
    ["points", r => r.pointsCost], ["channel", r => r.channelId ?? "—"], ["prompt", r => r.promptSnippet], ["error", r => r.errorMessage || ""],
    ["", r => el("button", { type: "button", class: "link", "data-task": r.taskNo, onclick: () => showTask(r.taskNo).catch(e => say("task-msg", e.message, false)) }, t("detail"))],
    ["", r => ["created", "queued", "processing"].includes(r.status)
      ? el("button", { type: "button", class: "link danger", onclick: async () => { try { await api(`/admin/tasks/${encodeURIComponent(r.taskNo)}/cancel`, { method: "POST" }); say("task-msg", t("done"), true); loadTasks(page); } catch (e) { say("task-msg", e.message, false); } } }, t("cancel"))
      : ""],
  ], data.records), pager(data, loadTasks));
}

// A task as the operator sees it: its attempts, ledger rows and every exchange with the
// upstream. Bodies are the upstream's and the user's text: <pre> with text nodes only.
async function showTask(taskNo) {
  const d = await api(`/admin/tasks/${encodeURIComponent(taskNo)}`);
  const task = d.task;
  const box = $("task-detail");
  const shown = d.exchanges.length < d.exchangeCount ? el("p", { class: "meta" }, t("exchangeShown", d.exchangeCount, d.exchanges.length)) : null;
  box.replaceChildren(...[
    el("h2", {}, task.taskNo, " ", el("span", { class: "meta" }, `${task.username || "#" + task.userId} · ${task.modelName} · ${task.status} · ${t("channel")} ${task.channelId ?? "—"}`)),
    el("p", { class: "prompt" }, task.promptSnippet),
    task.errorMessage ? el("p", { class: "err" }, task.errorMessage) : null,
    el("h3", {}, t("attempts")),
    table([["time", a => a.startTime], ["channel", a => a.channelName || a.channelId || "—"], ["outcome", a => a.outcome], ["", a => a.httpStatus ?? ""], ["error", a => a.error || ""]], d.attempts),
    el("h3", {}, t("ledger")),
    table([["time", r => when(r.createTime)], ["net", r => r.delta], ["action", r => r.kind], ["note", r => r.note || ""]], d.ledger),
    el("h3", {}, t("exchanges")),
    el("p", { class: "meta" }, t("exchangeHint")),
    shown,
    d.exchanges.length ? el("div", { id: "exchanges" }, d.exchanges.map(exchangeView)) : el("p", { class: "meta" }, t("noExchanges")),
  ].filter(Boolean));
  box.classList.remove("hidden");
  box.scrollIntoView({ block: "start" });
}
const prettyBody = (body) => {
  try { return JSON.stringify(JSON.parse(body), null, 2); } catch (e) { return body; }
};
const headerLines = (headers) => Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join("\n");
function exchangeView(x) {
  const outcome = x.status === null ? t("noAnswer") : `HTTP ${x.status}`;
  const part = (key, text, cls) => text ? [el("div", { class: "label" }, t(key)), el("pre", { class: cls }, text)] : [];
  return el("details", { class: "exchange", "data-exchange": x.id },
    el("summary", {}, `${x.time} · ${t("step_" + x.step)} · ${x.method} ${x.url} → ${outcome} · ${x.elapsedMs} ms`
      + (x.repeats ? ` · ${t("repeated", x.repeats, x.lastTime)}` : "")),
    x.error ? el("p", { class: "err" }, x.error) : null,
    part("requestHeaders", headerLines(x.requestHeaders), "headers"),
    part("requestBody", x.requestBody === null ? "" : prettyBody(x.requestBody), "request"),
    part("responseHeaders", headerLines(x.responseHeaders), "headers"),
    part("responseBody", x.responseBody === null ? "" : prettyBody(x.responseBody), "response"));
}

// --- Channels and models ----------------------------------------------------------------------------
async function loadChannels() {
  const channels = await api("/admin/channels");
  $("channels").replaceChildren(table([
    ["name", c => c.name], ["protocol", c => c.protocol], ["priority", c => c.priority], ["keys", c => c.keys.map(k => k.key).join(", ")],
    ["hourRate", c => fmtRate(c.lastHour.successRate)], ["costPerPicture", c => c.costPerPicture],
    ["enabled", c => el("button", { type: "button", class: "link", onclick: async () => { try { await api(`/admin/channels/${c.id}/${c.enabled ? "disable" : "enable"}`, { method: "POST" }); loadChannels(); } catch (e) { say("ch-msg", e.message, false); } } }, c.enabled ? t("disable") : t("enable"))],
  ], channels));
}
$("ch-create").onclick = async () => {
  const models = $("ch-models").value.split("\n").map(s => s.trim()).filter(Boolean).map(line => {
    const [modelName, upstream] = line.split("=").map(s => s.trim());
    return { modelName, upstreamModel: upstream || modelName };
  });
  try {
    await api("/admin/channels", { method: "POST", json: {
      name: $("ch-name").value.trim(), protocol: $("ch-protocol").value, baseUrl: $("ch-url").value.trim(),
      addKeys: $("ch-key").value ? [$("ch-key").value] : [], models, costPerPicture: $("ch-cost").value || "0" } });
    $("ch-key").value = "";
    say("ch-msg", t("done"), true); loadChannels();
  } catch (e) { say("ch-msg", e.message, false); }
};
async function loadModels() {
  const models = await api("/admin/models");
  $("models").replaceChildren(table([
    ["model", m => m.modelName], ["description", m => m.description],
    ["taskType", m => t({ text_to_image: "t2i", image_to_image: "i2i", both: "both" }[m.taskType] || m.taskType)],
    ["price", m => el("input", { type: "number", min: 0, value: m.pointsCost, "aria-label": `${m.modelName} ${t("price")}`, id: "price-" + m.modelName })],
    ["enabled", m => el("input", { type: "checkbox", checked: m.enabled, "aria-label": `${m.modelName} ${t("enabled")}`, id: "enabled-" + m.modelName })],
    ["", m => el("button", { type: "button", class: "link", "data-model": m.modelName, onclick: async () => {
      try {
        await api(`/admin/models/${encodeURIComponent(m.modelName)}`, { method: "PUT", json: {
          pointsCost: Number(document.getElementById("price-" + m.modelName).value),
          enabled: document.getElementById("enabled-" + m.modelName).checked } });
        say("model-msg", t("saved"), true);
      } catch (e) { say("model-msg", e.message, false); }
    } }, t("save"))],
    ["options", m => el("div", {}, optionsSummary(m), " ",
      el("button", { type: "button", class: "link", "data-edit-model": m.modelName, "aria-label": `${t("editOptions")} ${m.modelName}`, onclick: () => openModelEditor(m) }, t("editOptions")))],
  ], models));
}

// --- A model's parameters and price rule: JSON, checked by the API, priced here as a preview. ---
function optionsSummary(m) {
  const params = m.parameters || {};
  const parts = Object.entries(params.choices || {}).map(([name, c]) => `${name} ×${c.values.length}`);
  if ((params.maxN || 1) > 1) parts.push(t("upToN", params.maxN));
  return parts.length ? parts.join(" · ") : t("noOptions");
}
let editing = null;  // the model in the editor
function openModelEditor(m) {
  editing = m;
  $("model-editor-title").textContent = `${m.modelName} · ${t("options")}`;
  $("model-type").value = m.taskType;
  $("model-params").value = JSON.stringify(m.parameters || {}, null, 2);
  $("model-rule").value = JSON.stringify(m.priceRule || {}, null, 2);
  markInvalid(null);
  say("model-def-msg", "", true);
  $("model-editor").classList.remove("hidden");
  previewPrices();
  $("model-type").focus();
}
function markInvalid(field) {
  for (const [id, name] of [["model-params", "parameters"], ["model-rule", "priceRule"]]) {
    if (name === field) $(id).setAttribute("aria-invalid", "true"); else $(id).removeAttribute("aria-invalid");
  }
}
function readJson(id, name) {
  const text = $(id).value.trim();
  if (!text) return {};
  try { return JSON.parse(text); } catch (e) { const err = new Error(t("badJson", name)); err.data = { field: name }; throw err; }
}
// One picture's listed price for the chosen values, as the server's rule works it out.
function listedPrice(base, rule, values) {
  let price = base, times = 1, plus = 0;
  for (const [name, value] of Object.entries(values)) {
    const effect = ((rule.choices || {})[name] || {})[value];
    if (!effect) continue;
    if (effect.points !== undefined) price = Number(effect.points);
    if (effect.times !== undefined) times *= Number(effect.times);
    if (effect.plus !== undefined) plus += Number(effect.plus);
  }
  return Math.round((price * times + plus) * 10000) / 10000;
}
const PREVIEW_ROWS = 48;
function previewPrices() {
  if (!editing) return;
  let params, rule;
  try { params = readJson("model-params", "parameters"); rule = readJson("model-rule", "priceRule"); }
  catch (e) { $("model-preview").replaceChildren(el("p", { class: "msg bad" }, e.message)); return; }
  const choices = Object.entries((params && params.choices) || {}).filter(([, c]) => c && Array.isArray(c.values));
  let combos = [{}];
  for (const [name, c] of choices) combos = combos.flatMap(v => c.values.map(x => Object.assign({}, v, { [name]: String(x) })));
  const base = Number(document.getElementById("price-" + editing.modelName)?.value ?? editing.pointsCost);
  const rows = combos.slice(0, PREVIEW_ROWS).map(values => ({ values, each: listedPrice(base, rule || {}, values) }));
  const notes = [];
  if (rule && rule.perReference) notes.push(t("perReference", rule.perReference));
  if (combos.length > PREVIEW_ROWS) notes.push(t("moreRows", combos.length - PREVIEW_ROWS));
  $("model-preview").replaceChildren(
    table([...choices.map(([name]) => [name, r => r.values[name]]), ["listed", r => r.each]], rows),
    ...notes.map(n => el("p", { class: "meta" }, n)));
}
$("model-params").oninput = previewPrices;
$("model-rule").oninput = previewPrices;
$("model-def-close").onclick = () => { editing = null; $("model-editor").classList.add("hidden"); };
$("model-def-save").onclick = async () => {
  if (!editing) return;
  try {
    const body = { taskType: $("model-type").value, parameters: readJson("model-params", "parameters"), priceRule: readJson("model-rule", "priceRule") };
    const saved = await api(`/admin/models/${encodeURIComponent(editing.modelName)}`, { method: "PUT", json: body });
    markInvalid(null);
    say("model-def-msg", t("saved"), true);
    await loadModels();
    editing = saved;
    $("model-params").value = JSON.stringify(saved.parameters || {}, null, 2);
    $("model-rule").value = JSON.stringify(saved.priceRule || {}, null, 2);
    previewPrices();
  } catch (e) {
    markInvalid(e.data && e.data.field);
    say("model-def-msg", e.message, false);
  }
};

// --- Codes and groups --------------------------------------------------------------------------------
async function loadCodes(page) {
  const filter = { batch: $("code-batch").value.trim(), state: $("code-state").value };
  $("code-export").href = "/admin/codes/export?" + query(filter);
  const data = await api("/admin/codes?" + query({ page, size: 20, ...filter }));
  $("codes").replaceChildren(table([
    ["code", c => c.code], ["batch", c => c.batch], ["points", c => c.points], ["state", c => t(c.state)],
    ["note", c => c.note || ""], ["usedBy", c => c.usedBy ?? ""], ["expiry", c => c.expireTime || "—"],
  ], data.records), pager(data, loadCodes));
}
$("code-create").onclick = async () => {
  const body = { count: Number($("code-count").value), points: Number($("code-points").value), note: $("code-note").value || null };
  if ($("code-expire").value) body.expireTime = $("code-expire").value;
  try {
    const made = await api("/admin/codes", { method: "POST", json: body });
    say("code-msg", t("madeCodes", made.count, made.batch), true);
    $("code-made").textContent = made.codes.join("\n");
    $("code-made").classList.remove("hidden");
    $("code-batch").value = made.batch;
    loadCodes(1);
  } catch (e) { say("code-msg", e.message, false); }
};
$("code-disable-batch").onclick = async () => {
  const batch = $("code-batch").value.trim();
  if (!batch || !confirm(t("confirm"))) return;
  try { await api("/admin/codes/disable", { method: "POST", json: { batch } }); loadCodes(1); }
  catch (e) { say("code-msg", e.message, false); }
};
// The export needs the token: fetched here, saved as a file.
$("code-export").onclick = async (ev) => {
  ev.preventDefault();
  const res = await fetch($("code-export").href, { headers: { Authorization: "Bearer " + token } });
  const link = el("a", { href: URL.createObjectURL(await res.blob()), download: "codes.csv" });
  link.click();
};
async function loadGroups() {
  const groups = await api("/admin/groups");
  $("groups").replaceChildren(table([
    ["name", g => g.name], ["description", g => g.description], ["members", g => g.users],
    ["multiplier", g => el("input", { value: g.multiplier, id: "mult-" + g.name, "aria-label": `${g.name} ${t("multiplier")}` })],
    ["", g => el("button", { type: "button", class: "link", onclick: async () => {
      try { await api(`/admin/groups/${encodeURIComponent(g.name)}`, { method: "PUT", json: { multiplier: document.getElementById("mult-" + g.name).value } }); say("group-msg", t("saved"), true); loadGroups(); }
      catch (e) { say("group-msg", e.message, false); }
    } }, t("save"))],
  ], groups));
}
$("group-create").onclick = async () => {
  try {
    await api("/admin/groups", { method: "POST", json: { name: $("group-name").value.trim(), multiplier: $("group-multiplier").value, description: $("group-description").value } });
    say("group-msg", t("done"), true); loadGroups();
  } catch (e) { say("group-msg", e.message, false); }
};

// --- Audit log and the ledger audit --------------------------------------------------------------------
const brief = (v) => v ? JSON.stringify(v) : "";
async function loadAudit(page) {
  const data = await api("/admin/audit?" + query({ page, size: 20 }));
  $("audit").replaceChildren(table([
    ["time", a => when(a.createTime)], ["actor", a => a.actor], ["action", a => a.action], ["target", a => a.target],
    ["before", a => brief(a.before)], ["after", a => brief(a.after)],
  ], data.records), pager(data, loadAudit));
}
$("ledger-run").onclick = async () => {
  $("ledger-run").disabled = true;
  try {
    const checks = await api("/admin/ledger/audit");
    $("ledger-result").replaceChildren(table([
      ["check", c => c.name], ["checked", c => c.checked], ["state", c => c.ok ? t("pass") : t("fail")],
      ["violations", c => c.violationCount ? c.violations.join("; ") : "0"],
    ], checks));
  } catch (e) { $("ledger-result").replaceChildren(el("p", { class: "msg bad" }, e.message)); }
  finally { $("ledger-run").disabled = false; }
};

// --- Content safety ------------------------------------------------------------------------------------
// The word lists (issue 25), a prompt tried against them, the queue of flagged prompts and
// what the check caught. Prompts are users' text and words the operator's: both go in as
// text nodes, a hit as a <mark> around its text, never as markup.
words({
  safety: ["内容安全", "Content safety"],
  safetyPeriod: ["统计范围", "Period"],
  safetyDay: ["近 1 天", "Last day"],
  safetyWeek: ["近 7 天", "Last 7 days"],
  safetyMonth: ["近 30 天", "Last 30 days"],
  safetyBlocked: ["拦截", "Blocked"],
  safetyReplaced: ["替换", "Replaced"],
  safetyFlagged: ["标记审核", "Flagged"],
  safetyAwaiting: ["待审核", "Awaiting review"],
  safetyDenied: ["审核拒绝", "Denied"],
  tier_block: ["拦截", "Block"],
  tier_replace: ["替换", "Replace"],
  tier_review: ["审核", "Review"],
  reviewQueue: ["待审核的提示词", "Prompts awaiting review"],
  reviewHint: ["含审核级词条的提示词已照常生成;通过即结案,拒绝计入该用户的违规次数(达到设定次数时自动停用该用户)。",
    "Prompts with a review word were generated as usual: approving closes the case, denying counts a strike against the user (at the set number the user is disabled)."],
  reviewEmpty: ["没有待审核的提示词", "No prompt awaits review"],
  approve: ["通过", "Approve"],
  deny: ["拒绝", "Deny"],
  safetyHits: ["命中", "Hits"],
  addWords: ["批量添加词条", "Add words"],
  wordsOneALine: ["词条(每行一个)", "Words (one a line)"],
  noWords: ["请至少填写一个词条", "Write at least one word"],
  wordsAdded: ["已添加 {0} 个词条", "{0} words added"],
  wordsSkipped: [";跳过 {0} 个(已在词库中或为空):{1}", "; {0} skipped (already listed, or empty): {1}"],
  tryPrompt: ["试一试提示词", "Try a prompt"],
  tryIt: ["检查", "Check"],
  verdict_pass: ["通过:没有命中任何词条", "Passes: no listed word"],
  verdict_block: ["拦截:提交会被拒绝(400),不扣积分", "Blocked: the submit is refused (400), nothing charged"],
  verdict_replace: ["替换:命中的词打码后发往上游", "Replaced: the words are masked before the prompt goes upstream"],
  verdict_review: ["审核:照常生成,并进入待审核队列", "Review: generated as usual, and queued for review"],
  maskedPrompt: ["发往上游的提示词", "The prompt as sent upstream"],
  wordLists: ["词库", "Word lists"],
  safetyWord: ["词条", "Word"],
  safetyTier: ["级别", "Tier"],
  deleteWord: ["删除", "Delete"],
  safetyCaught: ["拦截记录", "What the check caught"],
  safetyDecision: ["审核结果", "Decision"],
  decision_open: ["待审核", "Awaiting review"],
  decision_approve: ["已通过", "Approved"],
  decision_deny: ["已拒绝", "Denied"],
  safetyUserId: ["用户 ID", "User id"],
  badUserId: ["用户 ID 须为正整数", "The user id must be a positive whole number"],
  openTask: ["查看任务 {0}", "Open task {0}"],
});
const SAFETY_TIERS = ["block", "replace", "review"];
const tierText = (tier) => t("tier_" + tier);
let safetyWordPage = 1;

// The prompt with its hits marked. A hit's start and text count code points (the server's
// indexes), so the prompt is cut as code points, not UTF-16 units; overlapping hits (two
// listed words sharing letters) make one mark of the stricter tier.
function markedPrompt(prompt, hits) {
  const chars = Array.from(prompt);
  const spans = hits.map(h => ({ start: h.start, end: h.start + Array.from(h.text).length, tier: h.tier, words: [h.word] }))
    .sort((a, b) => a.start - b.start);
  const merged = [];
  for (const span of spans) {
    const last = merged[merged.length - 1];
    if (last && span.start < last.end) {
      last.end = Math.max(last.end, span.end);
      if (SAFETY_TIERS.indexOf(span.tier) < SAFETY_TIERS.indexOf(last.tier)) last.tier = span.tier;
      last.words.push(...span.words);
    } else merged.push(span);
  }
  const parts = [];
  let at = 0;
  for (const span of merged) {
    if (span.start > at) parts.push(chars.slice(at, span.start).join(""));
    const title = `${tierText(span.tier)}: ${[...new Set(span.words)].join("、")}`;
    parts.push(el("mark", { class: "hit tier-" + span.tier, title }, chars.slice(span.start, span.end).join("")));
    at = span.end;
  }
  parts.push(chars.slice(at).join(""));
  return el("div", { class: "prompt caught" }, parts);
}
// "色·情 → 色情": what the user wrote and the listed word it folds to.
const hitWords = (hits) => [...new Set(hits.map(h => h.text === h.word ? h.word : `${h.text} → ${h.word}`))].join("、");
function decisionText(e) {
  if (e.tier !== "review") return "—";
  if (!e.decision) return t("decision_open");
  return `${t("decision_" + e.decision)} · ${e.decidedBy || ""} · ${e.decideTime || ""}`;
}
// A task number that opens the task in the Tasks tab.
function taskLink(taskNo) {
  if (!taskNo) return "—";
  return el("button", { type: "button", class: "link", "aria-label": t("openTask", taskNo), onclick: () => {
    $("tab-tasks").click();
    showTask(taskNo).catch(e => say("task-msg", e.message, false));
  } }, taskNo);
}

async function loadSafety() {
  try { await Promise.all([loadSafetySummary(), loadReviewQueue(1), loadSafetyWords(safetyWordPage), loadSafetyEvents(1)]); }
  catch (e) { say("safety-msg", e.message, false); }
}
async function loadSafetySummary() {
  const s = await api("/admin/safety/summary?" + query({ days: $("safety-days").value }));
  const card = (key, value, id) => el("div", { class: "card", id }, el("div", { class: "meta" }, t(key)), el("div", { class: "figure" }, value));
  $("safety-cards").replaceChildren(
    card("safetyBlocked", s.blocked, "safety-card-blocked"), card("safetyReplaced", s.replaced, "safety-card-replaced"),
    card("safetyFlagged", s.flagged, "safety-card-flagged"), card("safetyAwaiting", s.awaitingReview, "safety-card-awaiting"),
    card("safetyDenied", s.denied, "safety-card-denied"));
}

// --- The review queue: flagged prompts waiting for an approve or a deny, newest first. ---
async function loadReviewQueue(page) {
  const data = await api("/admin/safety/events?" + query({ state: "open", page, size: 10 }));
  if (!data.records.length) { $("safety-queue").replaceChildren(el("p", { class: "meta" }, t("reviewEmpty"))); return; }
  $("safety-queue").replaceChildren(el("div", { class: "review-list" }, data.records.map(reviewItem)), pager(data, loadReviewQueue));
}
function reviewItem(e) {
  return el("article", { class: "review", "data-event": e.id },
    el("div", { class: "meta" }, `${e.createTime} · ${e.username || "#" + e.userId} (#${e.userId}) · ${t("taskNo")} `, taskLink(e.taskNo)),
    markedPrompt(e.prompt, e.hits),
    el("div", { class: "meta" }, `${t("safetyHits")}: ${hitWords(e.hits)}`),
    el("div", { class: "row" },
      el("button", { type: "button", "data-approve": e.id, onclick: () => decide(e.id, "approve") }, t("approve")),
      el("button", { type: "button", class: "link danger", "data-deny": e.id, onclick: () => decide(e.id, "deny") }, t("deny"))));
}
async function decide(id, decision) {
  try {
    await api(`/admin/safety/events/${id}/decision`, { method: "POST", json: { decision } });
    say("safety-msg", t("done"), true);
  } catch (e) { say("safety-msg", e.message, false); }
  await loadSafety();
}

// --- The word lists: search, a tier changed in place, delete; words added a line each. ---
async function loadSafetyWords(page) {
  safetyWordPage = page;
  const data = await api("/admin/safety/words?" + query({ page, size: 50, q: $("safety-word-q").value.trim(), tier: $("safety-word-tier").value }));
  if (!data.records.length && page > 1) return loadSafetyWords(page - 1);  // the last one of a page deleted
  $("safety-words").replaceChildren(table([
    ["safetyWord", w => w.word],
    ["safetyTier", w => el("select", { "data-word-tier": w.id, "aria-label": `${w.word} ${t("safetyTier")}`, onchange: (ev) => changeTier(w, ev.target.value) },
      SAFETY_TIERS.map(x => el("option", { value: x, selected: x === w.tier }, tierText(x))))],
    ["note", w => w.note || ""],
    ["time", w => when(w.createTime)],
    ["", w => el("button", { type: "button", class: "link danger", "data-delete-word": w.id, "aria-label": `${t("deleteWord")} ${w.word}`, onclick: () => deleteWord(w) }, t("deleteWord"))],
  ], data.records), pager(data, loadSafetyWords));
}
async function changeTier(w, tier) {
  try {
    await api(`/admin/safety/words/${w.id}`, { method: "PUT", json: { tier } });
    say("safety-word-msg", `${w.word}: ${tierText(tier)}`, true);
  } catch (e) { say("safety-word-msg", e.message, false); }
  await loadSafetyWords(safetyWordPage);
}
async function deleteWord(w) {
  if (!confirm(t("confirm"))) return;
  try {
    await api(`/admin/safety/words/${w.id}`, { method: "DELETE" });
    say("safety-word-msg", t("done"), true);
  } catch (e) { say("safety-word-msg", e.message, false); }
  await loadSafetyWords(safetyWordPage);
}
$("safety-add").onclick = async () => {
  const list = $("safety-new-words").value.split(/\r?\n/).map(s => s.trim()).filter(Boolean);
  if (!list.length) { say("safety-add-msg", t("noWords"), false); return; }
  try {
    const made = await api("/admin/safety/words", { method: "POST", json: { words: list, tier: $("safety-new-tier").value, note: $("safety-new-note").value.trim() || null } });
    const skipped = made.skipped.length ? t("wordsSkipped", made.skipped.length, made.skipped.slice(0, 20).join("、")) : "";
    say("safety-add-msg", t("wordsAdded", made.added) + skipped, true);
    $("safety-new-words").value = "";
    await loadSafetyWords(1);
  } catch (e) { say("safety-add-msg", e.message, false); }
};
$("safety-word-search").onclick = () => loadSafetyWords(1).catch(e => say("safety-word-msg", e.message, false));
$("safety-word-q").onkeydown = (ev) => { if (ev.key === "Enter") $("safety-word-search").click(); };

// --- A prompt tried against the lists, nothing kept. ---
$("safety-try").onclick = async () => {
  const prompt = $("safety-try-prompt").value;
  if (!prompt.trim()) return;
  try {
    const tried = await api("/admin/safety/try", { method: "POST", json: { prompt } });
    $("safety-tried").replaceChildren(...[
      el("p", { id: "safety-verdict", class: "verdict verdict-" + tried.verdict }, t("verdict_" + tried.verdict)),
      tried.hits.length ? markedPrompt(prompt, tried.hits) : null,
      tried.hits.length ? el("p", { class: "meta" }, `${t("safetyHits")}: ${hitWords(tried.hits)}`) : null,
      el("div", { class: "label" }, t("maskedPrompt")),
      el("pre", { id: "safety-masked", class: "masked" }, tried.prompt),
    ].filter(Boolean));
  } catch (e) { $("safety-tried").replaceChildren(el("p", { class: "msg bad" }, e.message)); }
};

// --- What the check caught, by tier, decision and user. ---
async function loadSafetyEvents(page) {
  const user = $("safety-event-user").value.trim();
  if (user && !/^[1-9]\d*$/.test(user)) throw new Error(t("badUserId"));
  const data = await api("/admin/safety/events?" + query({ page, size: 20, tier: $("safety-event-tier").value, state: $("safety-event-state").value, userId: user }));
  $("safety-events").replaceChildren(table([
    ["time", e => when(e.createTime)],
    ["user", e => el("button", { type: "button", class: "link", "data-filter-user": e.userId, onclick: () => { $("safety-event-user").value = e.userId; $("safety-event-search").click(); } }, e.username || "#" + e.userId)],
    ["safetyTier", e => tierText(e.tier)],
    ["taskNo", e => taskLink(e.taskNo)],
    ["prompt", e => markedPrompt(e.prompt, e.hits)],
    ["safetyHits", e => hitWords(e.hits)],
    ["safetyDecision", e => decisionText(e)],
  ], data.records), pager(data, loadSafetyEvents));
}
$("safety-event-search").onclick = () => loadSafetyEvents(1).then(() => say("safety-msg", "", true)).catch(e => say("safety-msg", e.message, false));
$("safety-days").onchange = () => loadSafetySummary().catch(e => say("safety-msg", e.message, false));
$("safety-refresh").onclick = loadSafety;

setupTabs($("tabs"), (panel) => {
  const loaders = {
    "panel-dash": loadDashboard, "panel-users": () => loadUsers(1), "panel-tasks": () => loadTasks(1),
    "panel-channels": loadChannels, "panel-models": loadModels, "panel-codes": () => loadCodes(1),
    "panel-groups": loadGroups, "panel-audit": () => loadAudit(1),
    "panel-safety": loadSafety,
    "panel-pay": () => loadPayments().catch(e => say("pay-settings-msg", e.message, false)),
  };
  if (loaders[panel]) loaders[panel]().catch(e => say("user-msg", e.message, false));
});
setupLanguage(() => {
  if (adminName) $("who").textContent = t("currentUser") + adminName;
  if (stats) loadDashboard();
  if (paySettings && !$("panel-pay").hidden) loadPayments().catch(e => say("pay-settings-msg", e.message, false));
});
$("stats-granularity").onchange = loadDashboard;
$("stats-refresh").onclick = loadDashboard;
$("user-search").onclick = () => loadUsers(1);
$("task-search").onclick = () => loadTasks(1);
$("code-search").onclick = () => loadCodes(1);
setupSignIn(enter);
