// The registration form in the browser. The form works without this
// script; with it, the card number and security code are never brought
// back by the Back button, the payment section is switched off for a free
// ticket, and the button names the price of the ticket chosen.
"use strict";
(() => {
  const form = document.querySelector("form.register");
  if (!form) {
    return;
  }
  const payment = form.querySelector("fieldset.payment");
  const button = form.querySelector("button.pay");

  // Once the form is sent, its card number and security code never come
  // back with the page. Left, the page is either kept whole in the
  // back-forward cache, and shown again as it was (pageshow clears them),
  // or dropped, and then the browser keeps what was typed to fill it in
  // again when Back loads it: an input with autocomplete off is not kept.
  // That is set only as the form is sent, so that the browser may still
  // fill in the card while the attendee types.
  const secrets = new Map();
  for (const input of form.querySelectorAll("[data-secret]")) {
    secrets.set(input, input.getAttribute("autocomplete"));
  }
  let sent = false;
  form.addEventListener("submit", () => {
    sent = true;
    for (const input of secrets.keys()) {
      input.setAttribute("autocomplete", "off");
    }
  });
  window.addEventListener("pageshow", (e) => {
    if (e.persisted && sent) {
      sent = false;
      for (const [input, token] of secrets) {
        input.value = "";
        input.setAttribute("autocomplete", token);
      }
      show();
    }
  });

  const show = () => {
    const chosen = form.querySelector('input[name="ticket"]:checked');
    if (!chosen) {
      return;
    }
    if (payment) {
      payment.disabled = chosen.dataset.free === "true";
    }
    if (button && chosen.dataset.pay) {
      button.textContent = chosen.dataset.pay;
    }
  };
  form.addEventListener("change", (e) => {
    if (e.target.name === "ticket") {
      show();
    }
  });
  show();
})();
