// A node-opcua server for the OPC UA input's tests (sensors/opcua).
//
// Usage: node server.js CONFIG.json, where the JSON holds
//   port        TCP port on 127.0.0.1
//   cert, key   the server's application certificate and key (PEM)
//   uri         the application URI in the certificate
//   pki         folder of the store of trusted client certificates (trusted/certs/*.der)
//   userPki     folder of the store of trusted user certificates (identity: certificate)
//   users       {"name": "password"} accepted for identity: username
//   anonymous   whether anonymous sessions are allowed
//   variables   how many Double variables: ns=1;s=v<i>, browse path Objects/1:Line1/1:v<i>
//
// It prints "ready <port>" once it listens. Lines on stdin:
//   set <k>     every variable takes the value k (source timestamp now); answers "set <k>"
"use strict";

const fs = require("fs");
const readline = require("readline");
const { OPCUAServer } = require("node-opcua-server");
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");
const { SecurityPolicy } = require("node-opcua-secure-channel");
const { MessageSecurityMode } = require("node-opcua-service-secure-channel");
const { Variant, DataType } = require("node-opcua-variant");

async function main() {
  const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const store = (root) => new OPCUACertificateManager({
    rootFolder: root, automaticallyAcceptUnknownCertificate: false, disableFileWatchers: true,
  });
  const server = new OPCUAServer({
    port: cfg.port,
    host: "127.0.0.1",
    hostname: "127.0.0.1",
    certificateFile: cfg.cert,
    privateKeyFile: cfg.key,
    serverCertificateManager: store(cfg.pki),
    userCertificateManager: store(cfg.userPki),
    serverInfo: { applicationUri: cfg.uri, productUri: "urn:katka:test", applicationName: { text: "katka test server" } },
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256,
      SecurityPolicy.Aes128_Sha256_RsaOaep, SecurityPolicy.Aes256_Sha256_RsaPss],
    securityModes: [MessageSecurityMode.None, MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
    allowAnonymous: !!cfg.anonymous,
    userManager: { isValidUser: (user, password) => (cfg.users || {})[user] === password },
  });
  await server.initialize();

  const ns = server.engine.addressSpace.getOwnNamespace();
  const line = ns.addFolder(server.engine.addressSpace.rootFolder.objects, { nodeId: "s=Line1", browseName: "Line1" });
  const vars = [];
  for (let i = 0; i < cfg.variables; i++) {
    vars.push(ns.addVariable({
      componentOf: line, nodeId: `s=v${i}`, browseName: `v${i}`, dataType: "Double",
      value: new Variant({ dataType: DataType.Double, value: 0 }),
    }));
  }

  await server.start();
  process.stdout.write(`ready ${cfg.port}\n`);

  readline.createInterface({ input: process.stdin }).on("line", (line) => {
    const [cmd, arg] = line.trim().split(/\s+/);
    if (cmd === "set") {
      const now = new Date();
      const v = Number(arg);
      for (const n of vars) {
        n.setValueFromSource(new Variant({ dataType: DataType.Double, value: v }), undefined, now);
      }
      process.stdout.write(`set ${arg}\n`);
    }
  }).on("close", () => server.shutdown(0).then(() => process.exit(0)));
}

main().catch((err) => {
  process.stderr.write(`server failed: ${err && err.stack || err}\n`);
  process.exit(1);
});
