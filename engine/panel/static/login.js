"use strict";
// Sign in with the admin key; the gateway answers with a session cookie (HttpOnly).
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const message = document.getElementById("message");
  const input = document.getElementById("key");
  message.textContent = "";
  let response;
  try {
    response = await fetch("/admin/login", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({key: input.value}),
      credentials: "same-origin",
    });
  } catch (err) {
    message.textContent = "The gateway did not answer.";
    return;
  }
  input.value = "";
  if (response.ok) {
    location.reload();
    return;
  }
  let text = "Sign-in failed.";
  try {
    text = (await response.json()).error.message;
  } catch (err) { /* keep the generic text */ }
  message.textContent = text;
});
