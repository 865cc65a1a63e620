// The GraphiQL page (server/graphiql.py puts its config into #graphiql-config): a sign-in bar above GraphiQL, the
// explorer plugin, the ready-made dashboard tabs, and one graphql-transport-ws client that authenticates in its
// connection_init. No build step: plain JS with React.createElement. The page keeps credentials in memory only;
// localStorage holds nothing but the refresh token, and only when the user ticks "Remember me".
(function () {
  "use strict";
  var root = document.getElementById("graphiql");
  var barRoot = document.getElementById("auth-bar");
  var config = JSON.parse(document.getElementById("graphiql-config").textContent);

  if (!window.React || !window.ReactDOM || !window.GraphiQL || !window.graphqlWs ||
      (config.explorer && !window.GraphiQLPluginExplorer)) {
    root.id = "graphiql-error";
    root.textContent =
      "GraphiQL assets failed to load from this server. Run the setup command: " + config.setupCommand;
    return;
  }

  var React = window.React;
  var h = React.createElement;

  function absolute(path, websocket) {
    var url = new URL(path, window.location.href);
    if (websocket) url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }
  var endpoint = absolute(config.endpoint, false);
  var wsEndpoint = config.subscriptionEndpoint ? absolute(config.subscriptionEndpoint, true) : null;

  // ---------------------------------------------------------------------------------------------------------------
  // Credentials, in memory.

  // Mutations answer a payload: the result (`session`, `ok`) or, for an expected failure, `errors` (typed codes).
  var SESSION_FIELDS = "session { accessToken accessTokenExpiresAt refreshToken user { id email roles } } " +
    "errors { code message }";
  var REFRESH = "mutation GraphiQLRefresh($refreshToken: String!) { " +
    "refreshToken(input: {refreshToken: $refreshToken}) { " + SESSION_FIELDS + " } }";
  var LOGOUT = "mutation GraphiQLSignOut($refreshToken: String) { " +
    "logout(input: {refreshToken: $refreshToken}) { ok errors { code message } } }";
  var WHO = "query GraphiQLApiKey { me { id email roles } }";
  var MARKETS = "query GraphiQLMarkets { markets { id symbol } }";
  // The login mutation's input fields, read from the schema at load: an MFA code field appears when login takes one.
  var LOGIN_ARGS = "query GraphiQLLoginArgs { __type(name: \"LoginInput\") { inputFields { name " +
    "type { kind name ofType { kind name } } } } }";
  var MFA_ARG = /^(mfa|otp|totp|twoFactor)(Code|Token)?$|^(mfa|otp|totp|verification)?code$/i;

  var EMPTY = {kind: null, accessToken: null, refreshAt: 0, expiresAt: 0, refreshToken: null, apiKey: null,
               user: null, remember: false, busy: false, error: null, notice: null};
  var auth = Object.assign({}, EMPTY);
  var listeners = [];
  var refreshTimer = null;
  var refreshing = null;
  var mfa = {arg: null, type: "String", required: false};

  function setAuth(change) {
    auth = Object.assign({}, auth, change);
    listeners.forEach(function (listener) { listener(auth); });
  }

  function authorization() {
    if (auth.kind === "session" && auth.accessToken) return "Bearer " + auth.accessToken;
    if (auth.kind === "apikey" && auth.apiKey) return "Bearer " + auth.apiKey;
    return null;
  }

  function readRemembered() {
    try { return window.localStorage.getItem(config.rememberKey); } catch (e) { return null; }
  }
  function remember(token) {
    try { window.localStorage.setItem(config.rememberKey, token); } catch (e) { /* private mode: memory only */ }
  }
  function forget() {
    try { window.localStorage.removeItem(config.rememberKey); } catch (e) { /* nothing stored */ }
  }

  function ServerError(message, code, retryable) {
    this.message = message;
    this.code = code || null;
    this.retryable = Boolean(retryable);
  }

  // One GraphQL call of the sign-in bar. Returns {data, skewMs}: skewMs = server clock - browser clock (Date header),
  // so a token's expiry is read on the browser's clock even when the two disagree.
  async function call(query, variables, credential) {
    var headers = {"content-type": "application/json"};
    if (credential) headers.authorization = credential;
    var response;
    try {
      response = await window.fetch(endpoint, {method: "POST", headers: headers,
                                               body: JSON.stringify({query: query, variables: variables || {}})});
    } catch (e) {
      throw new ServerError("The server cannot be reached.", "NETWORK", true);
    }
    var body = null;
    try { body = await response.json(); } catch (e) { /* not JSON: handled below */ }
    if (body && body.errors && body.errors.length) {
      var first = body.errors[0];
      var code = first.extensions && first.extensions.code;
      throw new ServerError(first.message, code, code === "RATE_LIMITED" || code === "INTERNAL");
    }
    if (!response.ok || !body || !body.data) {
      throw new ServerError("The server answered HTTP " + response.status + ".", "HTTP", response.status >= 500);
    }
    var serverDate = Date.parse(response.headers.get("date") || "");
    return {data: body.data, skewMs: isNaN(serverDate) ? 0 : serverDate - Date.now()};
  }

  // A mutation payload's result (`data[field][result]`), or its first expected failure (`errors`) thrown.
  function resultOf(data, field, result) {
    var payload = data[field] || {};
    if (payload.errors && payload.errors.length) {
      throw new ServerError(payload.errors[0].message, payload.errors[0].code, false);
    }
    return payload[result];
  }

  function applySession(payload, skewMs, rememberMe) {
    var expiresAt = Date.parse(payload.accessTokenExpiresAt) - skewMs;
    var remaining = Math.max(0, expiresAt - Date.now());
    // Renew a minute before expiry, or at 3/4 of a short lifetime, so requests never carry an expired token.
    var refreshAt = expiresAt - Math.min(60000, remaining / 4);
    if (rememberMe) remember(payload.refreshToken); else forget();
    setAuth({kind: "session", accessToken: payload.accessToken, refreshToken: payload.refreshToken,
             expiresAt: expiresAt, refreshAt: refreshAt, user: payload.user, apiKey: null, remember: rememberMe,
             busy: false, error: null});
    scheduleRefresh();
    sockets.restart();
    if (!firstMarketId) loadMarkets();  // once: renewals do not need it again
  }

  function scheduleRefresh() {
    window.clearTimeout(refreshTimer);
    if (auth.kind !== "session") return;
    refreshTimer = window.setTimeout(function () { refreshSession().catch(function () {}); },
                                     Math.max(0, auth.refreshAt - Date.now()));
  }

  // Refresh tokens are single use (reusing a spent one revokes the session): one refresh at a time, and with
  // "Remember me" one across this browser's tabs (they share the stored token) under a Web Lock where there is one.
  function refreshSession() {
    if (refreshing) return refreshing;
    var run = async function () {
      var token = auth.refreshToken;
      if (auth.remember) {
        var stored = readRemembered();
        if (stored && stored !== token) token = stored;  // another tab renewed it: ours is spent
      }
      if (!token) throw new ServerError("Not signed in.", "UNAUTHENTICATED");
      var result = await call(REFRESH, {refreshToken: token});
      applySession(resultOf(result.data, "refreshToken", "session"), result.skewMs, auth.remember);
    };
    var locked = auth.remember && navigator.locks ?
      navigator.locks.request("stablerwa-graphiql-refresh", run) : run();
    refreshing = locked.catch(function (error) {
      if (error.retryable && auth.kind === "session" && Date.now() < auth.expiresAt) {
        window.clearTimeout(refreshTimer);  // try again soon, while the access token still works
        refreshTimer = window.setTimeout(function () { refreshSession().catch(function () {}); }, 5000);
      } else if (!error.retryable) {
        endLocally("Your session ended (" + error.message + "). Sign in again.");
      } else if (auth.kind !== "session") {
        setAuth({notice: "Could not restore your session (" + error.message + "). Reload, or sign in again."});
      }
      throw error;
    }).finally(function () { refreshing = null; });
    return refreshing;
  }

  // Before a request: a token due for renewal (a sleeping tab's timer may not have fired) is renewed first.
  async function ensureFresh() {
    if (refreshing) await refreshing.catch(function () {});
    if (auth.kind === "session" && Date.now() >= auth.refreshAt) await refreshSession().catch(function () {});
  }

  function endLocally(notice) {
    window.clearTimeout(refreshTimer);
    forget();
    auth = Object.assign({}, EMPTY, {notice: notice || null});
    listeners.forEach(function (listener) { listener(auth); });
    sockets.restart();
  }

  async function signIn(email, password, code, rememberMe) {
    setAuth({busy: true, error: null, notice: null});
    try {
      var variables = {email: email, password: password};
      var args = "$email: String!, $password: String!";
      var pass = "email: $email, password: $password";
      if (mfa.arg && code) {
        variables.mfaCode = code;
        args += ", $mfaCode: " + mfa.type;
        pass += ", " + mfa.arg + ": $mfaCode";
      }
      var result = await call("mutation GraphiQLSignIn(" + args + ") { login(input: {" + pass + "}) { " +
                              SESSION_FIELDS + " } }", variables);
      var session = resultOf(result.data, "login", "session");
      // an account with MFA and no code: login answers mfaRequired with null tokens (a challenge, not a session)
      if (!session || !session.accessToken) throw new ServerError("Enter the code from your authenticator app.",
                                                                  "MFA_REQUIRED");
      applySession(session, result.skewMs, rememberMe);
    } catch (error) {
      if (/^MFA/.test(error.code || "") && !mfa.arg) mfa = {arg: "mfaCode", type: "String", required: true};
      setAuth({busy: false, error: error.message});
    }
  }

  async function useApiKey(key) {
    key = key.trim();
    setAuth({busy: true, error: null, notice: null});
    if (!/^rwak_\S+$/.test(key)) {
      setAuth({busy: false, error: "An API key starts with rwak_."});
      return;
    }
    try {
      var result = await call(WHO, null, "Bearer " + key);
      forget();
      setAuth({kind: "apikey", apiKey: key, user: result.data.me, accessToken: null, refreshToken: null,
               remember: false, busy: false, error: null});
      sockets.restart();
      loadMarkets();
    } catch (error) {
      setAuth({busy: false, error: error.message});
    }
  }

  async function signOut() {
    setAuth({busy: true, error: null});
    if (auth.kind === "session") {
      try {
        await ensureFresh();  // logout needs a live access token
        if (auth.kind === "session") await call(LOGOUT, {refreshToken: auth.refreshToken}, authorization());
      } catch (e) { /* the session is forgotten here whatever the server says */ }
    }
    endLocally("Signed out.");
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Subscriptions: one graphql-transport-ws client whose connection_init carries the current credential
  // ({"authorization": "Bearer ..."}); when the credential changes (sign-in, renewal, sign-out) the socket is
  // restarted (close 4205, reconnected at once) and graphql-ws resubscribes the running operations with the new one.

  var sockets = (function () {
    if (!wsEndpoint) return {restart: function () {}, subscribe: null};
    var socket = null, state = "idle", restartWhenConnected = false, restarting = false;
    var client = window.graphqlWs.createClient({
      url: wsEndpoint,
      lazy: true,
      retryAttempts: 5,
      connectionParams: async function () {
        await ensureFresh();
        var credential = authorization();
        return credential ? {authorization: credential} : {};
      },
      retryWait: async function (retries) {
        if (restarting) { restarting = false; return; }
        await new Promise(function (resolve) { window.setTimeout(resolve, 1000 * Math.pow(2, retries)); });
      },
      on: {
        connecting: function () { state = "connecting"; },
        opened: function (opened) { socket = opened; },
        connected: function () {
          state = "connected";
          if (restartWhenConnected) { restartWhenConnected = false; restart(); }
        },
        closed: function () { state = "idle"; socket = null; restartWhenConnected = false; },
      },
    });
    function restart() {
      if (state === "connected" && socket && socket.readyState === WebSocket.OPEN) {
        restarting = true;
        socket.close(4205, "Client Restart");
      } else if (state === "connecting") {
        restartWhenConnected = true;  // its connection_init may carry the old credential
      }
    }
    // A power user's own Authorization header (headers editor) gets a socket of its own, closed with the operation.
    function subscribe(params, credential, sink) {
      if (!credential) return client.subscribe(params, sink);
      var own = window.graphqlWs.createClient({url: wsEndpoint, lazy: true, retryAttempts: 0,
                                               connectionParams: {authorization: credential}});
      var end = own.subscribe(params, sink);
      return function () { end(); own.dispose(); };
    }
    return {restart: restart, subscribe: subscribe};
  })();

  // ---------------------------------------------------------------------------------------------------------------
  // The fetcher: the sign-in bar's credential on every request, unless the headers editor sets Authorization.

  var httpFetcher = window.GraphiQL.createFetcher({url: endpoint});

  function isSubscription(documentAST, operationName) {
    if (!documentAST) return false;
    var operations = documentAST.definitions.filter(function (d) { return d.kind === "OperationDefinition"; });
    var chosen = operations.filter(function (d) {
      return operationName ? d.name && d.name.value === operationName : true;
    });
    return chosen.length > 0 && chosen[0].operation === "subscription";
  }

  function editorCredential(headers) {
    var found = null;
    Object.keys(headers).forEach(function (name) {
      if (name.toLowerCase() === "authorization" && String(headers[name]).trim()) found = String(headers[name]);
    });
    return found;
  }

  // GraphiQL can send the operation name of the tab shown before (the explorer sets it as it edits): a name the
  // document does not define is replaced by the document's only operation, instead of failing the run.
  function withKnownOperation(params, documentAST) {
    if (!documentAST || !params.operationName) return params;
    var names = documentAST.definitions.filter(function (d) { return d.kind === "OperationDefinition"; })
      .map(function (d) { return d.name ? d.name.value : null; });
    if (names.indexOf(params.operationName) >= 0 || names.length !== 1) return params;
    return Object.assign({}, params, {operationName: names[0] || undefined});
  }

  // The query editor's parsed document can lag behind its text (or be missing right after a tab switch): parse the
  // text being sent, so the operation and whether it is a subscription are read from what actually goes out.
  function parsed(query, fallback) {
    try { return window.GraphiQL.GraphQL.parse(query); } catch (e) { return fallback || null; }
  }

  function fetcher(params, opts) {
    opts = Object.assign({}, opts, {documentAST: parsed(params.query, opts && opts.documentAST)});
    params = withKnownOperation(params, opts.documentAST);
    var headers = Object.assign({}, opts && opts.headers);
    var own = editorCredential(headers);
    if (isSubscription(opts.documentAST, params.operationName) && sockets.subscribe) {
      return {
        subscribe: function (observer) {
          var ended = false, end = null, renewedForThis = false;
          var start = function () {
            ensureFresh().then(function () {
              if (ended) return;
              end = sockets.subscribe(params, own, {
                next: function (value) { renewedForThis = false; observer.next(value); },
                error: function (error) {
                  // 4401: the socket outlived its token (a sleeping tab's renewal timer did not fire): renew the
                  // session and subscribe again, once; anything else ends the operation.
                  if (error && error.code === 4401 && !own && auth.kind === "session" && !renewedForThis) {
                    renewedForThis = true;
                    refreshSession().then(start, function () { observer.error(new Error("Session expired.")); });
                    return;
                  }
                  if (error && typeof error.code === "number") {
                    error = new Error("Socket closed with event " + error.code + " " + (error.reason || ""));
                  }
                  observer.error(error);
                },
                complete: function () { observer.complete(); },
              });
            });
          };
          start();
          return {unsubscribe: function () { ended = true; if (end) end(); }};
        },
      };
    }
    return ensureFresh().then(function () {
      if (!own) {
        var credential = authorization();
        if (credential) headers.authorization = credential;
      }
      return httpFetcher(params, Object.assign({}, opts, {headers: headers}));
    });
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Ready-made tabs: clock placeholders resolved now; the market placeholder once a market is known.

  var firstMarketId = null;
  var marketListeners = [];

  function resolveClock(value) {
    if (value === config.placeholders.now) return new Date().toISOString();
    var match = typeof value === "string" && /^<(\d{1,4}) days ago>$/.exec(value);
    if (match) return new Date(Date.now() - Number(match[1]) * 86400000).toISOString();
    return value;
  }

  var tabs = config.tabs.map(function (tab) {
    if (!tab.variables) return tab;
    var variables = JSON.parse(tab.variables);
    Object.keys(variables).forEach(function (name) { variables[name] = resolveClock(variables[name]); });
    return Object.assign({}, tab, {variables: JSON.stringify(variables, null, 2)});
  });

  async function loadMarkets() {
    try {
      var result = await call(MARKETS, null, authorization());
      var markets = result.data.markets || [];
      if (markets.length && authorization()) {
        firstMarketId = markets[0].id;
        marketListeners.forEach(function (listener) { listener(firstMarketId); });
      }
    } catch (e) { /* no market visible: the placeholder stays, and says what to put there */ }
  }

  // Rendered inside GraphiQL (toolbar.additionalComponent), where the editors are reachable: fills the market
  // placeholder into the variables of the tab being shown.
  function MarketDefaults() {
    var editor = window.GraphiQL.React.useEditorContext({nonNull: true});
    var state = React.useState(firstMarketId);
    var marketId = state[0], setMarketId = state[1];
    React.useEffect(function () {
      marketListeners.push(setMarketId);
      return function () { marketListeners.splice(marketListeners.indexOf(setMarketId), 1); };
    }, []);
    React.useEffect(function () {
      var variables = editor.variableEditor;
      if (!marketId || !variables) return;
      var placeholder = JSON.stringify(config.placeholders.firstMarket);
      var text = variables.getValue();
      if (text.indexOf(placeholder) >= 0) variables.setValue(text.split(placeholder).join(JSON.stringify(marketId)));
    }, [marketId, editor.activeTabIndex, editor.variableEditor]);
    return null;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // The sign-in bar.

  function useAuth() {
    var state = React.useState(auth);
    React.useEffect(function () {
      var listener = state[1];
      listeners.push(listener);
      return function () { listeners.splice(listeners.indexOf(listener), 1); };
    }, []);
    return state[0];
  }

  function clock(ms) {
    return new Date(ms).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"});
  }

  function AuthBar() {
    var current = useAuth();
    var mode = React.useState("password"), setMode = mode[1];
    var email = React.useState(""), password = React.useState(""), code = React.useState("");
    var keep = React.useState(false), apiKey = React.useState("");
    var title = h("span", {className: "auth-title"}, "StableRWA");
    var message = current.error ? h("span", {id: "auth-error", className: "auth-error", role: "alert"}, current.error)
      : current.notice ? h("span", {id: "auth-notice", className: "auth-muted"}, current.notice) : null;

    if (current.kind) {
      var who = current.user ? current.user.email + " (" + (current.user.roles || []).join(", ") + ")" : "";
      var detail = current.kind === "apikey" ? "with an API key" :
        "token valid until " + clock(current.expiresAt) + ", renewed automatically" +
        (current.remember ? "; remembered in this browser" : "");
      return h(React.Fragment, null, title,
        h("span", {id: "auth-user", className: "auth-status"}, "Signed in as " + who),
        h("span", {className: "auth-muted"}, detail),
        h("button", {id: "auth-signout", type: "button", disabled: current.busy, onClick: signOut}, "Sign out"),
        message);
    }

    function input(props, pair) {
      return h("input", Object.assign({value: pair[0], onChange: function (e) { pair[1](e.target.value); }}, props));
    }
    var passwordForm = h("form", {id: "auth-password-form", onSubmit: function (e) {
        e.preventDefault();
        signIn(email[0].trim(), password[0], code[0].trim(), keep[0]).then(function () { password[1](""); });
      }},
      input({id: "auth-email", type: "email", placeholder: "Email", autoComplete: "username", required: true}, email),
      input({id: "auth-password", type: "password", placeholder: "Password", autoComplete: "current-password",
             required: true}, password),
      mfa.arg ? input({id: "auth-mfa", className: "auth-mfa", type: "text", placeholder: "MFA code",
                       inputMode: "numeric", autoComplete: "one-time-code", required: mfa.required}, code) : null,
      h("label", {title: "Keep the refresh token in this browser's localStorage, so a reload stays signed in"},
        h("input", {id: "auth-remember", type: "checkbox", checked: keep[0],
                    onChange: function (e) { keep[1](e.target.checked); }}), "Remember me"),
      h("button", {id: "auth-signin", type: "submit", disabled: current.busy}, "Sign in"),
      h("button", {type: "button", className: "auth-switch", onClick: function () { setMode("apikey"); }},
        "Use an API key instead"));
    var keyForm = h("form", {id: "auth-apikey-form", onSubmit: function (e) {
        e.preventDefault();
        useApiKey(apiKey[0]).then(function () { apiKey[1](""); });
      }},
      input({id: "auth-apikey", type: "password", placeholder: "rwak_…", autoComplete: "off", required: true,
             title: "Kept in this page's memory only"}, apiKey),
      h("button", {id: "auth-use-key", type: "submit", disabled: current.busy}, "Use API key"),
      h("button", {type: "button", className: "auth-switch", onClick: function () { setMode("password"); }},
        "Sign in with a password instead"));
    return h(React.Fragment, null, title, mode[0] === "apikey" ? keyForm : passwordForm, message);
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Mount.

  // GraphiQL's own state (tabs, queries, variables, theme) stays in this page's memory: nothing reaches localStorage.
  var memory = new Map();
  var storage = {
    getItem: function (key) { return memory.has(key) ? memory.get(key) : null; },
    setItem: function (key, value) { memory.set(key, String(value)); },
    removeItem: function (key) { memory.delete(key); },
    clear: function () { memory.clear(); },
    key: function (index) { return Array.from(memory.keys())[index] || null; },
    get length() { return memory.size; },
  };

  var plugins = [];
  var explorer = null;
  if (config.explorer) {
    explorer = window.GraphiQLPluginExplorer.explorerPlugin({showAttribution: false});
    plugins.push(explorer);
  }

  window.ReactDOM.createRoot(barRoot).render(h(AuthBar));
  window.ReactDOM.createRoot(root).render(
    h(window.GraphiQL, {
      fetcher: fetcher,
      defaultTabs: tabs,
      defaultHeaders: "",
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
      storage: storage,
      plugins: plugins,
      visiblePlugin: explorer || undefined,
      toolbar: {additionalComponent: MarketDefaults},
    })
  );

  // The schema's login input fields (an MFA code field appears when login takes one), then a remembered session.
  call(LOGIN_ARGS).then(function (result) {
    var type = result.data.__type;
    var arg = type && (type.inputFields || []).filter(function (a) { return MFA_ARG.test(a.name); })[0];
    if (arg) {
      var required = arg.type.kind === "NON_NULL";
      mfa = {arg: arg.name, type: (required ? arg.type.ofType.name : arg.type.name) + (required ? "!" : ""),
             required: required};
      setAuth({});
    }
  }).catch(function () { /* introspection off: no MFA field until the server asks for one */ });

  var remembered = readRemembered();
  if (remembered) {
    auth = Object.assign({}, auth, {refreshToken: remembered, remember: true, notice: "Restoring your session…"});
    refreshSession().catch(function () {});
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") ensureFresh();
  });
})();
