// The /authorize page: asks for the platform, starts the IntelligenceBank login in a popup, polls until
// the login completes, then follows the redirect back to the client. No secrets are embedded in the page.
// The start sends X-IBGW-Login-Page, so the gateway binds the login to this browser with an HttpOnly cookie;
// the polls carry that cookie (same-origin credentials), and a poll from any other browser is refused.
(function () {
  "use strict";
  var jsonHeaders = { Accept: "application/json", "X-IBGW-Login-Page": "1" };
  var form = document.getElementById("platform-form");
  var statusLine = document.getElementById("status");
  var button = document.getElementById("continue");
  var pollTimer = null;

  function say(text, isError) {
    statusLine.textContent = text;
    statusLine.className = isError ? "error" : "";
  }

  function poll(token, popup) {
    fetch("/authorize/poll?token=" + encodeURIComponent(token), { headers: jsonHeaders, credentials: "same-origin" })
      .then(function (response) {
        return response.json().then(function (body) { return { status: response.status, body: body }; });
      })
      .then(function (result) {
        if (result.status === 200 && result.body.redirect_url) {
          if (popup && !popup.closed) { popup.close(); }
          say("Signed in. Returning to the application…", false);
          window.location.assign(result.body.redirect_url);
          return;
        }
        if (result.status === 404 && result.body.error === "authorization_pending") {
          pollTimer = setTimeout(function () { poll(token, popup); }, 2000);
          return;
        }
        button.disabled = false;
        say(result.body.error_description || "The login could not be completed.", true);
      })
      .catch(function () {
        pollTimer = setTimeout(function () { poll(token, popup); }, 4000);
      });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (pollTimer) { clearTimeout(pollTimer); }
    var platform = document.getElementById("platform_url").value.trim();
    var query = window.location.search.replace(/^\?/, "");
    var url = "/authorize?" + query + (query ? "&" : "") + "platform_url=" + encodeURIComponent(platform);
    // Open the popup now, inside the click, so that browsers do not block it.
    var popup = window.open("about:blank", "ib-login", "width=520,height=720");
    button.disabled = true;
    say("Starting the IntelligenceBank login…", false);
    fetch(url, { headers: jsonHeaders, credentials: "same-origin" })
      .then(function (response) {
        return response.json().then(function (body) { return { status: response.status, body: body }; });
      })
      .then(function (result) {
        if (result.status !== 200 || !result.body.loginUrl) {
          if (popup) { popup.close(); }
          button.disabled = false;
          say(result.body.error_description || "Could not start the login.", true);
          return;
        }
        if (popup) { popup.location.href = result.body.loginUrl; } else { window.open(result.body.loginUrl, "ib-login"); }
        say("Complete the login in the IntelligenceBank window…", false);
        poll(result.body.token, popup);
      })
      .catch(function () {
        if (popup) { popup.close(); }
        button.disabled = false;
        say("The gateway could not be reached.", true);
      });
  });
})();
