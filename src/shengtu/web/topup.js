// The user console's top-up page (issue 24): one of the operator's tiers or an amount of
// one's own, a way to pay, then the provider's page or its QR code; the order followed until
// it is paid (the balance moves), expires or is closed; the orders made before.
"use strict";

words({
  topup: ["充值", "Top up"],
  topupTitle: ["在线充值", "Top up online"],
  chooseAmount: ["充值金额", "Amount"],
  customAmount: ["自定义金额", "Another amount"],
  customHint: ["{0} 至 {1},每 {2} 得 {3} 积分", "{0} to {1}; {3} points per {2}"],
  customPoints: ["约得 {0} 积分", "about {0} points"],
  tierPoints: ["{0} 积分", "{0} points"],
  tierBonus: ["另赠 {0} 积分", "+{0} bonus points"],
  payMethod: ["支付方式", "Pay with"],
  payNow: ["去支付", "Pay"],
  noMethods: ["暂未开放在线支付,请使用兑换码", "Online payment is not open yet: use a code"],
  pickAmount: ["请选择充值金额", "Choose an amount"],
  pickMethod: ["请选择支付方式", "Choose how to pay"],
  amountRange: ["请输入 {0} 至 {1} 之间的金额", "Type an amount from {0} to {1}"],
  redirecting: ["正在前往支付页面…", "Going to the payment page…"],
  badCheckout: ["支付地址无效,请联系运营", "The payment address is not valid: tell the operator"],
  orderTitle: ["订单 {0}", "Order {0}"],
  withBonus: ["{0} 积分(含赠送 {1})", "{0} points ({1} of them bonus)"],
  expiresIn: ["剩余 {0}", "{0} left"],
  expiring: ["已到期,正在确认…", "Past its time, being confirmed…"],
  stillPending: ["订单仍未确认,请稍后在充值记录中查看", "Not confirmed yet: look at your orders later"],
  scanToPay: ["请使用支付应用扫码支付", "Scan with the payment app to pay"],
  qrAlt: ["订单 {0} 的支付二维码", "QR code to pay order {0}"],
  goPay: ["前往支付页面", "Go to the payment page"],
  paidOk: ["支付成功,已到账 {0} 积分", "Paid: {0} points credited"],
  orderEnded: ["订单{0}", "The order is {0}"],
  topupHistory: ["充值记录", "My top-ups"],
  orderNo: ["订单号", "Order"],
  payAmount: ["金额", "Amount"],
  payMethodCol: ["支付方式", "Paid with"],
  paidAt: ["支付时间", "Paid at"],
  show: ["查看", "Show"],
});

let payOptions = null;  // GET /user/pay/options: currency, limits, tiers, methods
let watched = null;  // the order followed on screen: {order, poll, tick}
let payOrdersPage = 1;
let qrObjectUrl = null;  // the QR code shown, as an object URL (revoked when replaced)
const POLL_MS = 2000;
const GIVE_UP_MS = 5 * 60 * 1000;  // past expiry, the server's last check has long been made

async function loadTopup() {
  payOptions = await api("/user/pay/options");
  knowDigits(payOptions.currency, payOptions.minorDigits);
  renderTopup();
  await loadPayOrders(payOrdersPage);
}
// What this page writes in the page's language, written again when it changes.
function renderTopup() {
  if (!payOptions) return;
  renderTiers();
  renderMethods();
  renderCustomHint();
  if (watched) showOrder(watched.order);
}

// On a change of language: the page, and the history's headings and statuses.
function relabelTopup() {
  if (!payOptions) return;
  renderTopup();
  loadPayOrders(payOrdersPage).catch(e => say("topup-msg", e.message, false));
}

// --- The amount: a tier, or one's own within the operator's limits. ---------------------------------
function renderTiers() {
  const o = payOptions;
  const chosen = chosenTier();
  $("tier-list").replaceChildren(...o.tiers.map(tier => el("label", { class: "choice tier" },
    el("input", { type: "radio", name: "tier", value: tier.id, "data-tier": tier.id }),
    el("span", { class: "tier-amount" }, money(tier.amount, o.currency)),
    el("span", {}, t("tierPoints", tier.points)),
    tier.bonus ? el("span", { class: "bonus" }, t("tierBonus", tier.bonus)) : null,
    tier.label ? el("span", { class: "meta" }, tier.label) : null)));
  const custom = o.maxAmount > 0 && o.maxAmount >= o.minAmount;
  $("tier-custom").closest("label").classList.toggle("hidden", !custom);
  $("custom-amount").classList.toggle("hidden", !custom);
  const again = document.querySelector(`#tiers input[name=tier][value="${CSS.escape(chosen || "")}"]`);
  const first = document.querySelector("#tiers input[name=tier]:not([value=custom])");
  (again || first || (custom ? $("tier-custom") : null))?.click();
}
function chosenTier() {
  const chosen = document.querySelector("#tiers input[name=tier]:checked");
  return chosen ? chosen.value : null;
}
function renderCustomHint() {
  const o = payOptions;
  const custom = chosenTier() === "custom";
  $("custom-amount").disabled = !custom;
  const parts = [t("customHint", money(o.minAmount, o.currency), money(o.maxAmount, o.currency),
    money(10 ** minorDigits(o.currency), o.currency), o.pointsPerUnit)];
  const amount = toMinor($("custom-amount").value, o.currency);
  if (custom && amount > 0) {
    parts.push(t("customPoints", Math.floor(amount * Number(o.pointsPerUnit) / 10 ** minorDigits(o.currency))));
  }
  $("custom-hint").textContent = parts.join(" · ");
}
$("tiers").onchange = renderCustomHint;
$("custom-amount").oninput = renderCustomHint;

function renderMethods() {
  const chosen = document.querySelector("#methods input[name=method]:checked");
  const methods = payOptions.methods;
  $("method-list").replaceChildren(...(methods.length ? methods.map(m => el("label", { class: "choice" },
    el("input", { type: "radio", name: "method", value: m.key, checked: chosen ? chosen.value === m.key : m === methods[0] }),
    el("span", {}, m.label))) : [el("p", { class: "meta" }, t("noMethods"))]));
  $("pay-create").disabled = !methods.length;
}

// The order to ask for, or null (with the reason said) when the choice is not complete.
function orderRequest() {
  const o = payOptions;
  const tier = chosenTier();
  const method = document.querySelector("#methods input[name=method]:checked");
  if (!tier) { say("topup-msg", t("pickAmount"), false); return null; }
  if (!method) { say("topup-msg", t("pickMethod"), false); return null; }
  if (tier !== "custom") return { tierId: Number(tier), method: method.value };
  const amount = toMinor($("custom-amount").value, o.currency);
  if (!(amount >= o.minAmount && amount <= o.maxAmount)) {
    say("topup-msg", t("amountRange", money(o.minAmount, o.currency), money(o.maxAmount, o.currency)), false);
    $("custom-amount").focus();
    return null;
  }
  return { amount, method: method.value };
}
$("pay-create").onclick = async () => {
  if (!payOptions) return;
  const body = orderRequest();
  if (!body) return;
  $("pay-create").disabled = true;
  try {
    const order = await api("/user/pay/orders", { method: "POST", json: body });
    learnClockGap(order.createdAt);
    say("topup-msg", "", true);
    if (order.checkout && order.checkout.kind === "redirect") { goToProvider(order); return; }
    watch(order);
    await loadPayOrders(1);
  } catch (e) { say("topup-msg", e.message, false); }
  finally { $("pay-create").disabled = false; }
};
// The provider's own page; it sends the payer back to /console/?payOrder=NO (orderFromAddress).
function goToProvider(order) {
  const url = safeUrl(order.checkout.url);
  if (!url) { say("topup-msg", t("badCheckout"), false); return; }
  say("topup-msg", t("redirecting"), true);
  location.assign(url);
}

// --- Time left: order times are the server's local time without a zone ("2026-01-02T10:00:00").
// The gap between that clock and this browser's is learned when an order is made here, and
// kept across the provider's page and back; until then the two are taken to agree.
const CLOCK_GAP_KEY = "shengtu.payClockGap";
function learnClockGap(createdAt) {
  const gap = Date.parse(createdAt) - Date.now();
  if (Number.isFinite(gap)) localStorage.setItem(CLOCK_GAP_KEY, String(gap));
}
function msLeft(expiresAt) {
  return Date.parse(expiresAt) - (Number(localStorage.getItem(CLOCK_GAP_KEY)) || 0) - Date.now();
}
function minutesAndSeconds(ms) {
  const s = Math.ceil(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

// --- The order on screen, followed every 2 s until it is no longer pending. ------------------------
// announce: say how it ended if it already has (back from the provider's page, where the
// notify may have come first).
function watch(order, announce = false) {
  stopWatching();
  watched = { order, poll: null, tick: null };
  say("pay-order-msg", "", true);  // what was said of the order shown before
  showOrder(order);
  $("pay-order").scrollIntoView({ block: "nearest" });
  if (order.status !== "pending") {
    if (announce) orderEnded(order).catch(e => say("pay-order-msg", e.message, false));
    return;
  }
  watched.tick = setInterval(() => showCountdown(watched.order), 1000);
  watched.poll = setTimeout(() => pollOrder(order.orderNo), POLL_MS);
}
function stopWatching() {
  if (!watched) return;
  clearInterval(watched.tick);
  clearTimeout(watched.poll);
  watched.tick = watched.poll = null;
}
async function pollOrder(orderNo) {
  const following = () => watched && watched.order.orderNo === orderNo && watched.tick !== null;
  if (!following()) return;
  let order = null;
  try { order = await api(`/user/pay/orders/${encodeURIComponent(orderNo)}`); }
  catch (e) { say("pay-order-msg", e.message, false); }  // a lost answer: ask again
  if (!following()) return;  // another order was shown meanwhile
  if (order) {
    watched.order = order;
    showOrder(order);
    if (order.status !== "pending") { stopWatching(); await orderEnded(order); return; }
    say("pay-order-msg", "", true);
  }
  if (msLeft(watched.order.expiresAt) < -GIVE_UP_MS) {
    stopWatching();
    say("pay-order-msg", t("stillPending"), false);
    return;
  }
  watched.poll = setTimeout(() => pollOrder(orderNo), POLL_MS);
}
async function orderEnded(order) {
  if (order.status === "paid") {
    say("pay-order-msg", t("paidOk", order.points + (order.bonus || 0)), true);
    await refreshBalance();
  } else {
    say("pay-order-msg", t("orderEnded", orderStatus(order.status)), false);
  }
  await loadPayOrders(1);
}
function pointsText(order) {
  const bonus = order.bonus || 0;
  return bonus ? t("withBonus", order.points + bonus, bonus) : t("tierPoints", order.points);
}
function showOrder(order) {
  const pending = order.status === "pending";
  const checkout = pending ? order.checkout : null;
  $("pay-order-title").textContent = t("orderTitle", order.orderNo);
  $("pay-order-summary").textContent = [money(order.amount, order.currency), pointsText(order), order.methodLabel || order.method].join(" · ");
  $("pay-order-status").textContent = orderStatus(order.status);
  $("pay-order-status").dataset.status = order.status;
  showCountdown(order);
  const link = checkout && checkout.kind === "redirect" ? safeUrl(checkout.url) : null;
  $("pay-go").classList.toggle("hidden", !link);
  if (link) $("pay-go").href = link; else $("pay-go").removeAttribute("href");
  if (checkout && checkout.kind === "qr") showQr(order.orderNo).catch(e => say("pay-order-msg", e.message, false));
  else hideQr();
  $("pay-order").classList.remove("hidden");
}
function showCountdown(order) {
  const left = order.status === "pending" && order.expiresAt ? msLeft(order.expiresAt) : null;
  $("pay-countdown").textContent = left === null ? "" : left > 0 ? t("expiresIn", minutesAndSeconds(left)) : t("expiring");
}
// The QR code needs the console's credentials, which an <img src> cannot carry: it is
// fetched with them and shown from an object URL (an SVG in an <img> runs no script).
async function showQr(orderNo) {
  const img = $("pay-qr");
  if (img.dataset.order === orderNo) return;
  img.dataset.order = orderNo;
  const res = await fetch(`/user/pay/orders/${encodeURIComponent(orderNo)}/qr.svg`, { headers: { Authorization: "Bearer " + token } });
  if (!res.ok) {
    delete img.dataset.order;
    const body = await res.json().catch(() => ({}));
    throw new Error(body.message || t("failed"));
  }
  const svgBlob = new Blob([await res.blob()], { type: "image/svg+xml" });
  if (img.dataset.order !== orderNo) return;  // another order was shown meanwhile
  hideQr();
  qrObjectUrl = URL.createObjectURL(svgBlob);
  img.dataset.order = orderNo;
  img.src = qrObjectUrl;
  img.alt = t("qrAlt", orderNo);
  $("pay-qr-box").classList.remove("hidden");
}
function hideQr() {
  if (qrObjectUrl) URL.revokeObjectURL(qrObjectUrl);
  qrObjectUrl = null;
  $("pay-qr").removeAttribute("src");
  delete $("pay-qr").dataset.order;
  $("pay-qr-box").classList.add("hidden");
}
async function openOrder(orderNo, announce = false) {
  try { watch(await api(`/user/pay/orders/${encodeURIComponent(orderNo)}`), announce); }
  catch (e) { say("topup-msg", e.message, false); }
}

async function loadPayOrders(page) {
  payOrdersPage = page;
  const size = 10;
  const data = paged(await api("/user/pay/orders?" + query({ page, size })), page, size);
  $("pay-orders").replaceChildren(table([
    ["time", o => when(o.createdAt)],
    ["orderNo", o => o.orderNo],
    ["payAmount", o => money(o.amount, o.currency)],
    ["pointsTab", o => pointsText(o)],
    ["payMethodCol", o => o.methodLabel || o.method],
    ["status", o => orderStatus(o.status)],
    ["paidAt", o => when(o.paidAt)],
    ["", o => el("button", { type: "button", class: "link", "data-order": o.orderNo, onclick: () => openOrder(o.orderNo) }, t("show"))],
  ], data.records), pager(data, loadPayOrders));
}

// Back from a provider's page at /console/?payOrder=NO (payments.service.back_url; a provider
// may add fields of its own, 易支付 its out_trade_no and signature): that order is shown and
// followed. The address is cleaned, so neither a reload nor the history keeps them.
function orderFromAddress() {
  const params = new URLSearchParams(location.search);
  const orderNo = params.get("payOrder") || params.get("out_trade_no");
  if (orderNo) history.replaceState(null, "", location.pathname + location.hash);
  return orderNo;
}
async function resumeTopup() {
  const orderNo = orderFromAddress();
  if (!orderNo) return;
  showTab($("tab-topup"));
  await openOrder(orderNo, true);
}
