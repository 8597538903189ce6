import { describe, expect, it } from 'vitest';
import { fillTemplate, parseEndpoints, placeholdersIn, TemplateError } from '../../../cmd/install/template.ts';

const template = JSON.stringify({
  cniVersion: '1.0.0',
  name: 'strand',
  plugins: [
    {
      type: 'strand-bridge',
      bridge: 'strand0',
      ipam: {
        type: 'strand-ipam',
        nodeName: '${NODE_NAME}',
        ranges: [[{ subnet: '10.244.0.0/16' }]],
        etcd: {
          endpoints: '${ETCD_ENDPOINTS}',
          prefix: '/strand/${NODE_NAME}',
          tls: { ca: '${ETCD_CA}', cert: '${ETCD_CERT}', key: '${ETCD_KEY}' },
        },
      },
    },
    { type: 'portmap', capabilities: { portMappings: true }, note: 'etcd at ${ETCD_ENDPOINTS}' },
  ],
});

const base = { NODE_NAME: 'kind-worker', ETCD_ENDPOINTS: ['https://172.18.0.2:2379', 'https://172.18.0.3:2379'] };

describe('fillTemplate', () => {
  it('fills placeholders: a whole-string endpoint list becomes an array, inside a string a comma list', () => {
    const { conflist } = fillTemplate(template, base);
    const ipam = (conflist.plugins[0] as any).ipam;
    expect(ipam.nodeName).toBe('kind-worker');
    expect(ipam.etcd.endpoints).toEqual(base.ETCD_ENDPOINTS);
    expect(ipam.etcd.prefix).toBe('/strand/kind-worker');
    expect((conflist.plugins[1] as any).note).toBe('etcd at https://172.18.0.2:2379,https://172.18.0.3:2379');
  });

  it('drops the TLS object when no TLS is configured, keeps it with paths when it is', () => {
    const plain = fillTemplate(template, base).conflist;
    expect((plain.plugins[0] as any).ipam.etcd).not.toHaveProperty('tls');
    const tls = {
      ETCD_CA: '/etc/cni/net.d/strand-etcd/ca.crt',
      ETCD_CERT: '/etc/cni/net.d/strand-etcd/tls.crt',
      ETCD_KEY: '/etc/cni/net.d/strand-etcd/tls.key',
    };
    const withTls = fillTemplate(template, { ...base, ...tls }).conflist;
    expect((withTls.plugins[0] as any).ipam.etcd.tls).toEqual({ ca: tls.ETCD_CA, cert: tls.ETCD_CERT, key: tls.ETCD_KEY });
  });

  it('keeps objects that were empty in the template', () => {
    const t = JSON.stringify({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'strand-bridge', ipam: {} }] });
    expect(fillTemplate(t, {}).conflist.plugins[0]).toEqual({ type: 'strand-bridge', ipam: {} });
  });

  it('writes canonical text: the same input gives the same bytes (re-runs compare equal)', () => {
    const a = fillTemplate(template, base).text;
    const b = fillTemplate(JSON.stringify(JSON.parse(template), null, 4), base).text;
    expect(a).toBe(b);
    expect(a.endsWith('}\n')).toBe(true);
    expect(JSON.parse(a).name).toBe('strand');
  });

  it('names a required placeholder without a value and where to set it', () => {
    expect(() => fillTemplate(template, { NODE_NAME: 'n' })).toThrow(
      /template needs ETCD_ENDPOINTS at \$\.plugins\[0\]\.ipam\.etcd\.endpoints: set --etcd-endpoints or STRAND_ETCD_ENDPOINTS/,
    );
  });

  it('rejects unknown placeholders, also inside longer strings', () => {
    const t1 = JSON.stringify({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'x', a: '${POD_CIDR}' }] });
    const t2 = JSON.stringify({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'x', a: 'at ${nope}' }] });
    expect(() => fillTemplate(t1, {})).toThrow(TemplateError);
    expect(() => fillTemplate(t1, {})).toThrow(/unknown placeholder \$\{POD_CIDR\}/);
    expect(() => fillTemplate(t2, {})).toThrow(/unknown placeholder \$\{nope\}/);
  });

  it('rejects what is not a network configuration list', () => {
    expect(() => fillTemplate('{', {})).toThrow(/not valid JSON/);
    expect(() => fillTemplate('[]', {})).toThrow(/JSON object/);
    expect(() => fillTemplate('{"name":"n","plugins":[{"type":"x"}]}', {})).toThrow(/cniVersion/);
    expect(() => fillTemplate('{"cniVersion":"1.0.0","name":"a b","plugins":[{"type":"x"}]}', {})).toThrow(/name/);
    expect(() => fillTemplate('{"cniVersion":"1.0.0","name":"n","plugins":[]}', {})).toThrow(/non-empty plugins/);
    expect(() => fillTemplate('{"cniVersion":"1.0.0","name":"n","plugins":[{"mtu":1}]}', {})).toThrow(/plugins\[0\] needs a string type/);
  });
});

describe('placeholdersIn', () => {
  it('lists the placeholders used', () => {
    expect([...placeholdersIn(template)].sort()).toEqual(['ETCD_CA', 'ETCD_CERT', 'ETCD_ENDPOINTS', 'ETCD_KEY', 'NODE_NAME']);
    expect(placeholdersIn('{"a":"$NODE_NAME {NODE_NAME}"}').size).toBe(0);
  });
});

describe('parseEndpoints', () => {
  it('splits and trims a comma list of http(s) URLs', () => {
    expect(parseEndpoints(' http://127.0.0.1:2379, https://[::1]:2379,,')).toEqual(['http://127.0.0.1:2379', 'https://[::1]:2379']);
  });
  it('rejects empty lists, non-URLs and other schemes', () => {
    expect(() => parseEndpoints(' , ')).toThrow(/empty/);
    expect(() => parseEndpoints('127.0.0.1:2379')).toThrow(/http/);
    expect(() => parseEndpoints('not a url')).toThrow(/not a URL/);
    expect(() => parseEndpoints('unix:///run/etcd.sock')).toThrow(/http:\/\/ or https:\/\//);
  });
});
