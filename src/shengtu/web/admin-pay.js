// The operator console's 支付 page (issue 24): the top-up settings, the tiers and the payment
// methods (secrets sealed at rest: only their masks come back, and a blank keeps them), the
// orders with every notify kept for them and the operator's hand on them (check now, complete
// by hand, refund), and the daily reconciliation with the providers.
"use strict";

words({
  payments: ["支付", "Payments"],
  paySettings: ["支付设置", "Payment settings"],
  currency: ["币种(ISO 4217,如 CNY)", "Currency (ISO 4217, e.g. CNY)"],
  pointsPerUnit: ["每 1 单位货币(如 1 元)兑换的积分", "Points per unit of currency (e.g. per 1 yuan)"],
  minAmount: ["自定义金额下限", "Least custom amount"],
  maxAmount: ["自定义金额上限", "Most custom amount"],
  orderMinutes: ["订单有效期(分钟)", "Minutes an order may be paid in"],
  majorUnits: ["金额均按币种的主单位填写,如 12.50(元)。", "Amounts in the currency's main unit, e.g. 12.50 (yuan)."],
  payTiers: ["充值档位", "Top-up tiers"],
  newTier: ["新增档位", "New tier"],
  tierAmount: ["金额", "Amount"],
  tierPointsCol: ["积分", "Points"],
  tierBonusCol: ["赠送积分", "Bonus points"],
  tierLabel: ["标签", "Label"],
  remove: ["删除", "Delete"],
  payMethods: ["支付方式", "Payment methods"],
  addMethod: ["添加支付方式", "Add a payment method"],
  editMethod: ["编辑支付方式 {0}", "Edit payment method {0}"],
  methodKey: ["标识(字母、数字、-、_)", "Key (letters, digits, - and _)"],
  methodKind: ["类型", "Kind"],
  methodLabel: ["显示名称", "Label shown to payers"],
  secretHint: ["密钥类字段不回显;留空则保留已保存的值。", "Secrets are never shown: leave one blank to keep what is saved."],
  secretSet: ["已设置({0}),留空不变", "Set ({0}): blank keeps it"],
  needKey: ["请填写支付方式的标识", "Give the method a key"],
  edit: ["编辑", "Edit"],
  payOrders: ["充值订单", "Top-up orders"],
  payMethod: ["支付方式", "Method"],
  userId: ["用户 ID", "User id"],
  orderNo: ["订单号", "Order"],
  fromDay: ["起", "From"],
  toDay: ["止", "To"],
  payAmount: ["金额", "Amount"],
  tradeNo: ["支付平台单号", "Provider's number"],
  createdAt: ["创建时间", "Created"],
  paidAt: ["支付时间", "Paid"],
  paidVia: ["入账依据", "Credited by"],
  via_notify: ["支付通知", "Notify"],
  via_query: ["主动查询", "Query"],
  via_manual: ["手动完成", "By hand"],
  expiresAt: ["过期时间", "Expires"],
  bonusPoints: ["赠送积分", "Bonus points"],
  refundedSoFar: ["已退款", "Refunded"],
  checkoutKind: ["支付方式形态", "Checkout"],
  checkout_redirect: ["跳转支付页", "Provider's page"],
  checkout_qr: ["扫码", "QR code"],
  withBonus: ["{0}(含赠送 {1})", "{0} ({1} bonus)"],
  checkNow: ["立即向支付平台查询", "Ask the provider now"],
  completeByHand: ["手动完成", "Complete by hand"],
  completeReason: ["手动完成的原因(记入审计日志)", "Why complete it by hand (kept in the audit log)"],
  refundIt: ["退款", "Refund"],
  refundAmount: ["退款金额(留空为全部)", "Amount to refund (blank: all)"],
  refundReason: ["退款原因", "Why refund"],
  needReason: ["请填写原因", "Give a reason"],
  refundKept: ["未退款", "Not refunded"],
  refundConfirm: ["确定退款?未使用的积分将被扣回。", "Refund? The unspent points are taken back."],
  refundUnsettled: ["支付渠道没有给出退款结果:积分已收回,见订单的退款说明", "The provider gave no answer: the points are taken back; see the refund note"],
  refundRetry: ["重新向支付渠道提交", "Ask the provider again"],
  refundNoRetry: ["不能安全地重复提交(可能重复退款):请在支付渠道后台核实后确认结果", "It cannot safely be asked again (it could refund twice): check the provider's dashboard, then say what happened"],
  settleReason: ["核实说明", "What you checked"],
  refundWasDone: ["确认已退款", "It was refunded"],
  refundWasNot: ["确认未退款(退回积分)", "It was not (give the points back)"],
  refundNote: ["退款说明", "Refund note"],
  refundWhy: ["退款原因", "Refund reason"],
  refundAskedAt: ["申请退款时间", "Refund asked"],
  notifies: ["收到的支付通知", "Notifies received"],
  notifyHint: ["支付平台发来的每一条通知(签名与密钥已隐去),无论是否采信。", "Every notify the provider sent (signatures and keys hidden), believed or not."],
  noNotifies: ["没有收到通知", "No notify received"],
  verdict_credited: ["已入账", "Credited"],
  verdict_duplicate: ["重复通知", "Duplicate"],
  verdict_refused: ["已拒绝", "Refused"],
  verdict_mismatch: ["与订单不符", "Does not match the order"],
  verdict_unknown_order: ["未知订单", "Unknown order"],
  verdict_ignored: ["已收到,不处理", "Received, not acted on"],
  requestHeaders: ["请求头", "Headers"],
  notifyBody: ["通知内容", "Body"],
  payReport: ["每日对账", "Daily reconciliation"],
  day: ["日期", "Day"],
  runReport: ["查询", "Show"],
  reportOf: ["{0} 的对账({1})", "Reconciliation of {0} ({1})"],
  ordersPaid: ["已支付订单", "Orders paid"],
  providerSays: ["支付平台记录", "The provider says"],
  providerCannot: ["该支付平台无法查询", "Its API cannot say"],
  differences: ["差异", "Differences"],
  ours: ["本站", "ours"],
  theirs: ["平台", "theirs"],
  paidRevenue: ["今日充值收入", "Top-ups paid today"],
});

let paySettings = null;  // the settings shown: their currency formats every amount
let payKinds = [];  // GET /admin/payments/kinds: each kind's settings
let payMethodList = [];  // GET /admin/payments/methods
let editingMethod = null;  // the method in the editor (null: a new one)
let topupOrderPage = 1;
const payCurrency = () => (paySettings && paySettings.currency) || "CNY";
const siteZone = () => (paySettings && paySettings.timezone) || undefined;
// YYYY-MM-DD in the site's zone: the report's days are the site's, not the browser's.
const today = () => new Date().toLocaleDateString("sv", { timeZone: siteZone() });

async function loadPayments() {
  [paySettings, payKinds] = await Promise.all([api("/admin/payments/settings"), api("/admin/payments/kinds")]);
  showPaySettings();
  if (!$("report-day").value) $("report-day").value = today();
  await Promise.all([loadPayTiers(), loadPayMethods(), loadTopupOrders(topupOrderPage)]);
}

// --- Settings ------------------------------------------------------------------------------------
function showPaySettings() {
  const s = paySettings, c = s.currency;
  knowDigits(c, s.minorDigits);
  $("pay-currency").value = c;
  $("pay-ppu").value = s.pointsPerUnit;
  $("pay-min").value = toMajor(s.minAmount, c);
  $("pay-max").value = toMajor(s.maxAmount, c);
  $("pay-minutes").value = s.orderMinutes;
}
$("pay-settings-save").onclick = async () => {
  const currency = $("pay-currency").value.trim().toUpperCase();
  const body = {
    currency, pointsPerUnit: Number($("pay-ppu").value), orderMinutes: Number($("pay-minutes").value),
    minAmount: toMinor($("pay-min").value, currency), maxAmount: toMinor($("pay-max").value, currency),
  };
  try {
    paySettings = await api("/admin/payments/settings", { method: "PUT", json: body });
    showPaySettings();
    say("pay-settings-msg", t("saved"), true);
    await loadPayTiers();  // amounts in the new currency
  } catch (e) { say("pay-settings-msg", e.message, false); }
};

// --- Tiers: edited in place, added below. ---------------------------------------------------------
function tierInputs(tier, prefix) {
  const c = payCurrency();
  const labelled = (key) => ({ id: `${prefix}-${key}`, "aria-label": `${t(key)} ${tier.id ? "#" + tier.id : ""}`.trim() });
  return {
    amount: el("input", { ...labelled("tierAmount"), inputmode: "decimal", value: toMajor(tier.amount, c) }),
    points: el("input", { ...labelled("tierPointsCol"), type: "number", min: 0, value: tier.points }),
    bonus: el("input", { ...labelled("tierBonusCol"), type: "number", min: 0, value: tier.bonus }),
    label: el("input", { ...labelled("tierLabel"), value: tier.label || "" }),
    enabled: el("input", { ...labelled("enabled"), type: "checkbox", checked: tier.enabled }),
  };
}
function tierBody(inputs) {
  return {
    amount: toMinor(inputs.amount.value, payCurrency()), points: Number(inputs.points.value),
    bonus: Number(inputs.bonus.value || 0), label: inputs.label.value, enabled: inputs.enabled.checked,
  };
}
async function tierAction(fn) {
  try { await fn(); say("pay-tiers-msg", t("saved"), true); await loadPayTiers(); }
  catch (e) { say("pay-tiers-msg", e.message, false); }
}
async function loadPayTiers() {
  const tiers = await api("/admin/payments/tiers");
  const rows = tiers.map(tier => ({ tier, inputs: tierInputs(tier, "tier-" + tier.id) }));
  $("pay-tiers").replaceChildren(table([
    ["tierAmount", r => r.inputs.amount], ["tierPointsCol", r => r.inputs.points], ["tierBonusCol", r => r.inputs.bonus],
    ["tierLabel", r => r.inputs.label], ["enabled", r => r.inputs.enabled],
    ["", r => el("div", { class: "row" },
      el("button", { type: "button", class: "link", "data-tier-save": r.tier.id, onclick: () => tierAction(() =>
        api(`/admin/payments/tiers/${r.tier.id}`, { method: "PUT", json: tierBody(r.inputs) })) }, t("save")),
      el("button", { type: "button", class: "link danger", "data-tier-delete": r.tier.id, onclick: () => confirm(t("confirm")) && tierAction(() =>
        api(`/admin/payments/tiers/${r.tier.id}`, { method: "DELETE" })) }, t("remove")))],
  ], rows));
}
$("tier-add").onclick = () => tierAction(async () => {
  const inputs = { amount: $("tier-amount"), points: $("tier-points"), bonus: $("tier-bonus"), label: $("tier-label"), enabled: { checked: true } };
  await api("/admin/payments/tiers", { method: "POST", json: tierBody(inputs) });
  ["tier-amount", "tier-points", "tier-label"].forEach(id => { $(id).value = ""; });
  $("tier-bonus").value = "0";
});

// --- Methods: each kind's own settings, from GET /admin/payments/kinds. ---------------------------
const methodName = (key) => { const m = payMethodList.find(x => x.key === key); return m ? `${m.label} (${key})` : key; };
// The server names each kind in Chinese; in English, by the name the provider goes by.
const KIND_EN = { epay: "EPay", alipay: "Alipay", wechat: "WeChat Pay", stripe: "Stripe" };
const kindLabel = (kind) => lang === "en" && KIND_EN[kind] ? KIND_EN[kind] : (payKinds.find(k => k.kind === kind) || { label: kind }).label;
async function loadPayMethods() {
  payMethodList = await api("/admin/payments/methods");
  $("pay-methods").replaceChildren(table([
    ["methodKey", m => m.key], ["methodKind", m => kindLabel(m.kind)], ["methodLabel", m => m.label],
    ["enabled", m => m.enabled ? "✓" : "✗"],
    ["", m => el("button", { type: "button", class: "link", "data-method": m.key, onclick: () => openMethodEditor(m) }, t("edit"))],
  ], payMethodList));
  const chosen = $("po-method").value;
  $("po-method").replaceChildren(el("option", { value: "" }, t("all")),
    ...payMethodList.map(m => el("option", { value: m.key }, `${m.label} (${m.key})`)));
  $("po-method").value = chosen;
}
function openMethodEditor(method) {
  editingMethod = method;
  $("method-editor-title").textContent = method ? t("editMethod", method.key) : t("addMethod");
  $("method-key").value = method ? method.key : "";
  $("method-key").disabled = Boolean(method);
  $("method-kind").replaceChildren(...payKinds.map(k => el("option", { value: k.kind }, `${kindLabel(k.kind)} (${k.kind})`)));
  $("method-kind").value = method ? method.kind : (payKinds[0] || {}).kind || "";
  $("method-label").value = method ? method.label : "";
  $("method-enabled").checked = method ? method.enabled : true;
  renderMethodFields();
  say("pay-methods-msg", "", true);
  $("method-editor").classList.remove("hidden");
  (method ? $("method-label") : $("method-key")).focus();
}
function closeMethodEditor() {
  editingMethod = null;
  $("method-fields").replaceChildren();  // nothing typed into a secret stays in the page
  $("method-editor").classList.add("hidden");
}
// One input per setting of the chosen kind: the saved value, or the kind's default for a new
// method; a secret starts blank, its mask only a hint, and a blank keeps what is saved.
function renderMethodFields() {
  const kind = $("method-kind").value;
  const same = editingMethod && editingMethod.kind === kind;
  const config = same ? editingMethod.config || {} : {};
  const fields = same && editingMethod.fields ? editingMethod.fields : (payKinds.find(k => k.kind === kind) || { fields: [] }).fields;
  $("method-fields").replaceChildren(...fields.map(f => {
    const id = "method-field-" + f.name;
    const attrs = { id, "data-field": f.name, autocomplete: "off", spellcheck: "false", required: f.required };
    let input;
    if (f.secret) {
      attrs.placeholder = config[f.name] ? t("secretSet", config[f.name]) : "";
      input = f.multiline ? el("textarea", { ...attrs, class: "code" }) : el("input", { ...attrs, type: "password", autocomplete: "new-password" });
    } else {
      const value = config[f.name] ?? f.default ?? "";
      input = f.multiline ? el("textarea", { ...attrs, class: "code" }, value) : el("input", { ...attrs, value });
    }
    return el("div", { class: f.multiline ? "wide" : null },
      el("label", { for: id }, f.label + (f.required ? " *" : "")), input);
  }));
}
$("method-kind").onchange = renderMethodFields;
$("method-new").onclick = () => openMethodEditor(null);
$("method-close").onclick = closeMethodEditor;
$("method-save").onclick = async () => {
  const key = editingMethod ? editingMethod.key : $("method-key").value.trim();
  if (!key) { say("pay-methods-msg", t("needKey"), false); $("method-key").focus(); return; }
  const config = {};
  document.querySelectorAll("#method-fields [data-field]").forEach(n => { config[n.dataset.field] = n.value; });
  const body = { kind: $("method-kind").value, label: $("method-label").value.trim(), enabled: $("method-enabled").checked, config };
  try {
    await api(`/admin/payments/methods/${encodeURIComponent(key)}`, { method: "PUT", json: body });
    closeMethodEditor();
    say("pay-methods-msg", t("saved"), true);
    await loadPayMethods();
  } catch (e) { say("pay-methods-msg", e.message, false); }
};

// --- Orders, one order with its notifies, and the operator's hand on it. ---------------------------
function topupFilter() {
  return {
    status: $("po-status").value, method: $("po-method").value, userId: $("po-user").value.trim(),
    orderNo: $("po-no").value.trim(), from: $("po-from").value, to: $("po-to").value,
  };
}
const viaText = (via) => !via ? "—" : TEXT.zh["via_" + via] ? t("via_" + via) : via;
const pointsWithBonus = (o) => o.bonus ? t("withBonus", o.points + o.bonus, o.bonus) : String(o.points);
async function loadTopupOrders(page) {
  topupOrderPage = page;
  const filter = topupFilter();
  $("po-export").href = "/admin/payments/orders.csv?" + query(filter);
  const size = 20;
  const data = paged(await api("/admin/payments/orders?" + query({ page, size, ...filter })), page, size);
  $("pay-orders").replaceChildren(table([
    ["orderNo", o => o.orderNo], ["user", o => o.username || "#" + o.userId], ["payAmount", o => money(o.amount, o.currency)],
    ["points", o => pointsWithBonus(o)], ["payMethod", o => o.methodLabel || o.method],
    ["state", o => el("span", { class: "nowrap" }, orderStatus(o.status))],
    ["createdAt", o => when(o.createdAt)], ["paidAt", o => when(o.paidAt)],
    ["", o => el("button", { type: "button", class: "link nowrap", "data-order": o.orderNo,
      onclick: () => showTopupOrder(o.orderNo).catch(e => say("pay-orders-msg", e.message, false)) }, t("detail"))],
  ], data.records), pager(data, loadTopupOrders));
}
$("po-search").onclick = () => loadTopupOrders(1).catch(e => say("pay-orders-msg", e.message, false));
// The export needs the token: fetched here, saved as a file.
$("po-export").onclick = async (ev) => {
  ev.preventDefault();
  const res = await fetch($("po-export").href, { headers: { Authorization: "Bearer " + token } });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    say("pay-orders-msg", body.message || t("failed"), false);
    return;
  }
  el("a", { href: URL.createObjectURL(await res.blob()), download: "topup-orders.csv" }).click();
};

function facts(pairs) {
  return el("dl", { class: "facts" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .flatMap(([key, value]) => [el("dt", {}, t(key)), el("dd", {}, value)]));
}
async function showTopupOrder(orderNo) {
  const o = await api(`/admin/payments/orders/${encodeURIComponent(orderNo)}`);
  const c = o.currency;
  const box = $("pay-order-detail");
  const refreshed = async (done) => {
    await showTopupOrder(orderNo);
    say("pay-order-msg", done, true);
    await loadTopupOrders(topupOrderPage);
  };
  const act = (fn) => async () => {
    try { await fn(); await refreshed(t("done")); } catch (e) { say("pay-order-msg", e.message, false); }
  };
  // A refund (or a question about one) answers with the order: still refunding means the
  // provider gave no answer, which is not "done".
  const refundAct = (fn) => async () => {
    try {
      const after = await fn();
      await refreshed(t("done"));
      if (after && after.status === "refunding") say("pay-order-msg", t("refundUnsettled"), false);
    } catch (e) { say("pay-order-msg", e.message, false); }
  };
  const settleReason = el("input", { id: "order-settle-reason" });
  const settle = (done) => act(() => api(`/admin/payments/orders/${encodeURIComponent(orderNo)}/refund/settle`,
    { method: "POST", json: { done, reason: reasonOf(settleReason) } }));
  const completeReason = el("input", { id: "order-complete-reason" });
  const refundAmount = el("input", { id: "order-refund-amount", inputmode: "decimal" });
  const refundReason = el("input", { id: "order-refund-reason" });
  const reasonOf = (input) => {
    const reason = input.value.trim();
    if (!reason) { input.focus(); throw new Error(t("needReason")); }
    return reason;
  };
  const open = ["pending", "expired", "closed"].includes(o.status);
  box.replaceChildren(...[
    el("h2", {}, o.orderNo, " ", el("span", { class: "meta" }, `${o.username || "#" + o.userId} · ${o.methodLabel || o.method} · ${orderStatus(o.status)}`)),
    facts([
      ["payAmount", money(o.amount, c)], ["points", String(o.points)], ["bonusPoints", String(o.bonus || 0)],
      ["tradeNo", o.tradeNo], ["checkoutKind", o.checkout ? t("checkout_" + o.checkout.kind) : null],
      ["createdAt", when(o.createdAt)], ["expiresAt", when(o.expiresAt)], ["paidAt", o.paidAt && when(o.paidAt)], ["paidVia", o.paidVia ? viaText(o.paidVia) : null],
      ["refundedSoFar", o.refundedAmount ? `${money(o.refundedAmount, c)} · ${o.refundedPoints} ${t("points")}` : null],
      ["refundWhy", o.refundReason], ["refundAskedAt", o.refundAt && when(o.refundAt)], ["refundNote", o.refundNote],
    ]),
    el("div", { class: "row" },
      el("button", { type: "button", id: "order-check", onclick: act(() => api(`/admin/payments/orders/${encodeURIComponent(orderNo)}/check`, { method: "POST" })) }, t("checkNow"))),
    open ? el("div", { class: "form-row" },
      el("label", { for: "order-complete-reason" }, t("completeReason")), completeReason,
      el("button", { type: "button", id: "order-complete", class: "link danger", onclick: act(() =>
        api(`/admin/payments/orders/${encodeURIComponent(orderNo)}/complete`, { method: "POST", json: { reason: reasonOf(completeReason) } })) }, t("completeByHand"))) : null,
    o.status === "paid" ? el("div", { class: "form-row" },
      el("label", { for: "order-refund-amount" }, t("refundAmount")), refundAmount,
      el("label", { for: "order-refund-reason" }, t("refundReason")), refundReason,
      el("button", { type: "button", id: "order-refund", class: "link danger", onclick: refundAct(async () => {
        const body = { reason: reasonOf(refundReason) };
        if (refundAmount.value.trim()) body.amount = toMinor(refundAmount.value, c);
        if (!confirm(t("refundConfirm"))) throw new Error(t("refundKept"));
        return api(`/admin/payments/orders/${encodeURIComponent(orderNo)}/refund`, { method: "POST", json: body });
      }) }, t("refundIt"))) : null,
    o.status === "refunding" ? el("div", { class: "form-row", id: "refund-unsettled" },
      o.refundRepeatable
        ? el("button", { type: "button", id: "order-refund-retry", onclick: refundAct(() =>
            api(`/admin/payments/orders/${encodeURIComponent(orderNo)}/refund/retry`, { method: "POST" })) }, t("refundRetry"))
        : el("p", { class: "meta" }, t("refundNoRetry")),
      el("label", { for: "order-settle-reason" }, t("settleReason")), settleReason,
      el("button", { type: "button", id: "order-refund-done", class: "link", onclick: settle(true) }, t("refundWasDone")),
      el("button", { type: "button", id: "order-refund-undone", class: "link danger", onclick: settle(false) }, t("refundWasNot"))) : null,
    el("div", { class: "msg", id: "pay-order-msg", role: "status" }),
    el("h3", {}, t("notifies")),
    el("p", { class: "meta" }, t("notifyHint")),
    (o.notifies || []).length ? el("div", { id: "notifies" }, o.notifies.map(notifyView)) : el("p", { class: "meta" }, t("noNotifies")),
  ].filter(Boolean));
  box.classList.remove("hidden");
  box.scrollIntoView({ block: "start" });
}
// A notify's fields as kept: a query's or a form's one a line, decoded ("name = 生图积分");
// JSON indented; anything else as it came.
const FORM = /^[^\s=&]+=[^\s&]*(&[^\s=&]+=[^\s&]*)*$/;
function notifyFields(body) {
  if (!FORM.test(body)) return prettyBody(body);
  return Array.from(new URLSearchParams(body), ([name, value]) => `${name} = ${value}`).join("\n");
}
// A notify as it came in: the provider's text (or whoever sent it), so <pre> with text only.
function notifyView(n) {
  const verdict = TEXT.zh["verdict_" + n.verdict] ? t("verdict_" + n.verdict) : n.verdict;
  const headers = typeof n.headers === "string" ? n.headers : headerLines(n.headers || {});
  const body = n.body === null || n.body === undefined ? "" : notifyFields(String(n.body));
  return el("details", { class: "exchange", "data-notify": n.id },
    el("summary", {}, [String(n.receivedAt || "").replace("T", " "), n.method, verdict, n.reason].filter(Boolean).join(" · ")),
    headers ? [el("div", { class: "label" }, t("requestHeaders")), el("pre", { class: "headers" }, headers)] : [],
    body ? [el("div", { class: "label" }, t("notifyBody")), el("pre", { class: "body" }, body)] : []);
}

// --- The day's reconciliation: our paid orders per method beside what the provider reports. -------
const side = (v) => v === null || v === undefined ? "—" : typeof v === "number" ? money(v, payCurrency()) : typeof v === "string" ? v : JSON.stringify(v);
async function loadPayReport() {
  const r = await api("/admin/payments/report?" + query({ day: $("report-day").value || today() }));
  const c = payCurrency();
  $("pay-report").replaceChildren(
    el("p", { class: "meta" }, t("reportOf", r.day, siteZone() || "")),
    table([
      ["payMethod", m => methodName(m.method)],
      ["ordersPaid", m => m.ordersPaid],
      ["payAmount", m => money(m.amount, c)],
      ["providerSays", m => m.provider ? `${m.provider.ordersPaid} · ${money(m.provider.amount, c)}` : t("providerCannot")],
      ["differences", m => (m.differences || []).length
        ? el("ul", {}, m.differences.map(d => el("li", {}, `${d.orderNo}: ${t("ours")} ${side(d.ours)} / ${t("theirs")} ${side(d.theirs)}`)))
        : m.provider ? "0" : "—"],
    ], r.methods));
}
$("report-load").onclick = () => loadPayReport().catch(e => $("pay-report").replaceChildren(el("p", { class: "msg bad" }, e.message)));
