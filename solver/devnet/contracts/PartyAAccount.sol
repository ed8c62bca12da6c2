// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// A user's sub-account: the partyA seen by the diamond. Created by MultiAccount, which is the
/// only caller allowed; every call is forwarded to the diamond and its outcome returned as is.
contract PartyAAccount {
    address public immutable multiAccount;
    address public immutable symmio;

    constructor(address multiAccount_, address symmio_) {
        multiAccount = multiAccount_;
        symmio = symmio_;
    }

    function _call(bytes calldata callData) external returns (bool success, bytes memory resultData) {
        require(msg.sender == multiAccount, "PartyAAccount: Only MultiAccount");
        (success, resultData) = symmio.call(callData);
    }
}
