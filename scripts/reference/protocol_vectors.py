# Independent computation of verinfer protocol vectors (pycryptodome keccak, eth-abi, eth-account).
import json
from Crypto.Hash import keccak
from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data

def k(b): h = keccak.new(digest_bits=256); h.update(b); return h.digest()
def hx(b): return '0x' + b.hex()
Z = bytes(32)

def merkle_root(leaves):
    if not leaves: return Z
    lvl = list(leaves)
    n = 1
    while n < len(lvl): n *= 2
    lvl += [Z] * (n - len(lvl))
    while len(lvl) > 1:
        lvl = [k(lvl[i] + lvl[i+1]) for i in range(0, len(lvl), 2)]
    return lvl[0]

def tensor_root(b):
    chunks = [b[i:i+1024] for i in range(0, len(b), 1024)] or [b'']
    return merkle_root([k(c.ljust(1024, b'\0')) for c in chunks])

def token_ids_root(ids):
    return k(len(ids).to_bytes(8,'big') + tensor_root_of_ids(ids))

def tensor_root_of_ids(ids):
    return tensor_root(b''.join(i.to_bytes(4, 'little') for i in ids))

out = {}
L = [k(i.to_bytes(8, 'big')) for i in range(8)]
for n in [0, 1, 2, 3, 5, 8]:
    out[f'merkle_root_{n}'] = hx(merkle_root(L[:n]))
for n in [0, 1, 1024, 1025, 3000]:
    out[f'tensor_root_{n}'] = hx(tensor_root(bytes(i % 251 for i in range(n))))
out['token_ids_root_empty'] = hx(token_ids_root([]))
out['token_ids_root_123'] = hx(token_ids_root([1, 2, 3]))
out['trace_leaf_5'] = hx(k((5).to_bytes(32, 'big') + k(b'desc') + k(b'out')))
p = dict(maxTokens=256, temperatureMilli=700, topPMilli=950, seed=42, choiceIndex=1)
params_hash = k(encode(['uint32','uint32','uint32','uint64','uint32'], [256, 700, 950, 42, 1]))
out['params_hash'] = hx(params_hash)
out['sampling_key'] = hx(k((42).to_bytes(8, 'big') + (1).to_bytes(4, 'big')))

acct = Account.from_key((1).to_bytes(32, 'big'))
out['executor'] = acct.address
leaf = dict(version=1, requestId=k(b'request-1'), modelRoot=k(b'model'), promptRoot=token_ids_root([1,2,3]),
            paramsHash=params_hash, outputHash=token_ids_root([4,5]), finishReason=0, traceRoot=k(b'trace'),
            opCount=1000, executor=acct.address)
types = {
  'EIP712Domain': [dict(name='name', type='string'), dict(name='version', type='string'),
                   dict(name='chainId', type='uint256'), dict(name='verifyingContract', type='address')],
  'InferenceLeaf': [dict(name=n, type=t) for t, n in [('uint16','version'),('bytes32','requestId'),('bytes32','modelRoot'),
     ('bytes32','promptRoot'),('bytes32','paramsHash'),('bytes32','outputHash'),('uint8','finishReason'),
     ('bytes32','traceRoot'),('uint64','opCount'),('address','executor')]],
}
domain = dict(name='verinfer', version='1', chainId=31337, verifyingContract='0x5FbDB2315678afecb367f032d93F642f64180aa3')
msg = encode_typed_data(full_message=dict(types=types, primaryType='InferenceLeaf', domain=domain, message=leaf))
# msg.header = domain separator, msg.body = hashStruct(leaf)
out['domain_separator'] = hx(msg.header)
out['leaf_hash'] = hx(msg.body)
signed = Account.sign_message(msg, (1).to_bytes(32, 'big'))
out['signing_hash'] = hx(signed.message_hash)
out['signature'] = hx(signed.r.to_bytes(32,'big') + signed.s.to_bytes(32,'big') + bytes([signed.v]))
br = merkle_root([msg.body, k(b'x')])
out['batch_root_2'] = hx(br)
s1 = k(Z + br)
out['state_root_1'] = hx(s1)
print(json.dumps(out, indent=1))
